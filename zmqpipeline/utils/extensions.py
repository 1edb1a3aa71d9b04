"""msgpack extension types: the one hook for values msgpack cannot carry by itself.

Declare a type once, in a module every role imports (the pipeline's settings module, say),
and every role packs and unpacks it the same way; nothing is ever pickled::

    import decimal
    from zmqpipeline.utils.extensions import register_extension

    register_extension(
        decimal.Decimal,
        40,
        encode=lambda d: str(d).encode(),
        decode=lambda b: decimal.Decimal(b.decode()),
    )

Codes ``USER_CODES`` (32 to 127) are the user's; the lower ones are zmqpipeline's own
(``datetime``, ``date``, ``timedelta``, NumPy arrays, big values travelling as frames).

NumPy arrays (with numpy installed; it is never a dependency) are built in: dtype and shape
travel with the bytes; arrays of Python objects are refused with a
:class:`~zmqpipeline.errors.SerializationError`. A big array inside an item or a result
travels as a frame of its own (see :mod:`zmqpipeline.protocol.frames`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

import msgpack  # type: ignore[import-untyped]

from ..errors import ConfigurationError, SerializationError

__all__ = [
    "EXT_FRAME",
    "EXT_NDARRAY",
    "USER_CODES",
    "array_parts",
    "decode_extension",
    "encode_extension",
    "make_array",
    "register_extension",
]

#: A placeholder in a message's body for the value travelling as its extra frame N.
EXT_FRAME = 16
#: A NumPy array: ``[dtype.str, shape, data]`` (``data``: its bytes, or a frame number).
EXT_NDARRAY = 17
#: The extension codes a user may declare.
USER_CODES = range(32, 128)

_BY_TYPE: dict[type, tuple[int, Callable[[Any], bytes]]] = {}
_BY_CODE: dict[int, tuple[type, Callable[[bytes], Any]]] = {}


def register_extension(
    cls: type, code: int, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any]
) -> None:
    """Carry values of exactly ``cls`` as msgpack extension ``code`` (32-127):
    ``encode(value) -> bytes`` at the sender, ``decode(bytes) -> value`` at the receiver.
    Declare it once per process, in a module every role imports; declaring the same type
    and code again is allowed (a module imported twice), a clash is a
    :class:`~zmqpipeline.errors.ConfigurationError`."""
    if type(code) is not int or code not in USER_CODES:
        raise ConfigurationError(
            f"extension code {code!r} for {cls.__name__}: use an int from 32 to 127"
        )
    if not (callable(encode) and callable(decode)):
        raise ConfigurationError(
            f"extension {code} for {cls.__name__}: encode and decode must be callables"
        )
    known = _BY_CODE.get(code)
    if known is not None and known[0] is not cls:
        raise ConfigurationError(
            f"extension code {code} is already declared for {known[0].__name__}, not {cls.__name__}"
        )
    have = _BY_TYPE.get(cls)
    if have is not None and have[0] != code:
        raise ConfigurationError(
            f"{cls.__name__} is already declared as extension {have[0]}, not {code}"
        )
    _BY_TYPE[cls] = (code, encode)
    _BY_CODE[code] = (cls, decode)


def array_parts(obj: Any) -> tuple[str, list[int], Any] | None:
    """``(dtype, shape, contiguous array)`` of a NumPy array (``None``: not an array).
    An array of Python objects is refused: its elements are references, not data."""
    numpy = sys.modules.get("numpy")  # not imported: no value can be an array
    if numpy is None or not isinstance(obj, numpy.ndarray):
        return None
    if obj.dtype.hasobject:
        raise SerializationError(
            f"a NumPy array of dtype {obj.dtype} cannot travel: it holds Python objects "
            "(convert it to a numeric or string dtype, or to a list)"
        )
    return obj.dtype.str, list(obj.shape), numpy.ascontiguousarray(obj)


def make_array(dtype: str, shape: list[int], data: Any) -> Any:
    """The array of ``dtype`` and ``shape`` over ``data`` (a buffer; not copied, so the
    array is read-only when the buffer is)."""
    try:
        numpy = importlib.import_module("numpy")
    except ImportError:
        raise SerializationError(
            "a NumPy array arrived but numpy is not installed here (pip install numpy)"
        ) from None
    return numpy.frombuffer(data, dtype=numpy.dtype(dtype)).reshape(shape)


def encode_extension(obj: Any) -> msgpack.ExtType | None:
    """``obj`` as an extension type, or ``None`` if no extension carries it."""
    declared = _BY_TYPE.get(type(obj))
    if declared is not None:
        code, encode = declared
        data = encode(obj)
        if not isinstance(data, bytes):
            raise SerializationError(
                f"the encode of extension {code} returned {type(data).__name__}, not bytes"
            )
        return msgpack.ExtType(code, data)
    parts = array_parts(obj)
    if parts is not None:
        dtype, shape, array = parts
        return msgpack.ExtType(EXT_NDARRAY, msgpack.packb([dtype, shape, array.tobytes()]))
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(obj, numpy.generic):  # a NumPy scalar
        return (
            None
            if obj.dtype.hasobject
            else msgpack.ExtType(EXT_NDARRAY, msgpack.packb([obj.dtype.str, [], obj.tobytes()]))
        )
    return None


def decode_extension(code: int, data: bytes) -> Any:
    """The value of extension ``code`` (a NumPy array, or a declared type); an unknown
    code is kept as a ``msgpack.ExtType``."""
    if code == EXT_NDARRAY:
        dtype, shape, raw = msgpack.unpackb(data)
        if type(raw) is not bytes:
            raise SerializationError("a NumPy array's data must travel inline here")
        return make_array(dtype, shape, raw)
    declared = _BY_CODE.get(code)
    if declared is None:
        return msgpack.ExtType(code, data)
    return declared[1](data)
