"""msgpack encoding of dicts, with ``datetime``, ``date`` and ``timedelta`` values.

No pickle, ever: anything msgpack cannot carry fails here with a :class:`TypeError`
(:class:`~zmqpipeline.errors.SerializationError`) naming the key that held it.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import msgpack  # type: ignore[import-untyped]

from ..errors import SerializationError
from .extensions import decode_extension, encode_extension

__all__ = ["Packer", "deserialize", "find_unpackable", "serialize"]

_EXT_DATETIME = 1
_EXT_DATE = 2
_EXT_TIMEDELTA = 3


def _default(obj: Any) -> msgpack.ExtType:
    # datetime is a subclass of date: test it first.
    if isinstance(obj, _dt.datetime):
        return msgpack.ExtType(_EXT_DATETIME, obj.isoformat().encode())
    if isinstance(obj, _dt.date):
        return msgpack.ExtType(_EXT_DATE, obj.isoformat().encode())
    if isinstance(obj, _dt.timedelta):
        packed = msgpack.packb([obj.days, obj.seconds, obj.microseconds])
        return msgpack.ExtType(_EXT_TIMEDELTA, packed)
    ext = encode_extension(obj)  # a declared type, or a NumPy array
    if ext is not None:
        return ext
    raise TypeError(f"cannot serialize {type(obj).__name__!r}")


def ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_DATETIME:
        return _dt.datetime.fromisoformat(data.decode())
    if code == _EXT_DATE:
        return _dt.date.fromisoformat(data.decode())
    if code == _EXT_TIMEDELTA:
        days, seconds, micros = msgpack.unpackb(data)
        return _dt.timedelta(days=days, seconds=seconds, microseconds=micros)
    return decode_extension(code, data)


def find_unpackable(obj: Any, path: str = "") -> tuple[str, str] | None:
    """Return ``(key path, type name)`` of the first value msgpack cannot carry."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int, bytes, float, bool)) and key is not None:
                return (f"{path}[{key!r}]", f"key of type {type(key).__name__}")
            found = find_unpackable(value, f"{path}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            found = find_unpackable(value, f"{path}[{index}]")
            if found:
                return found
        return None
    if obj is None or isinstance(obj, (str, bytes, bool, int, float, _dt.date, _dt.timedelta)):
        if isinstance(obj, int) and not -(2**63) <= obj < 2**64:
            return (path or "value", "int out of 64-bit range")
        return None
    return (path or "value", type(obj).__name__)


class Packer:
    """A reusable msgpack packer (one per thread: msgpack packers are not thread-safe)."""

    __slots__ = ("_packer", "fast")

    def __init__(self) -> None:
        self._packer = msgpack.Packer(default=_default, use_bin_type=True, autoreset=True)
        #: msgpack's own ``pack``, for a hot path: no explanation on failure, and the
        #: caller must :meth:`reset` after one (:meth:`pack` explains and resets).
        self.fast = self._packer.pack

    def reset(self) -> None:
        self._packer.reset()

    def pack(self, obj: Any, context: str = "") -> bytes:
        try:
            packed: bytes = self._packer.pack(obj)
            return packed
        except (TypeError, ValueError, OverflowError) as exc:
            self._packer.reset()
            raise _explain(obj, context, exc) from None


def _explain(obj: Any, context: str, exc: Exception) -> SerializationError:
    if isinstance(exc, SerializationError):  # an extension's own error says it best
        return exc
    try:
        found = find_unpackable(obj)
    except RecursionError:  # nested deeper than Python recurses: say what msgpack said
        found = None
    where = f" for task type {context!r}" if context else ""
    if found:
        key, kind = found
        return SerializationError(
            f"cannot serialize value at {key} ({kind}){where}: msgpack carries only "
            "dict, list, str, bytes, int, float, bool, None, datetime, date, timedelta"
        )
    return SerializationError(f"cannot serialize message{where}: {exc}")


def serialize(data: Any, context: str = "") -> bytes:
    """Encode ``data`` (usually a dict) to msgpack bytes."""
    return Packer().pack(data, context)


def deserialize(raw: bytes) -> Any:
    """Decode msgpack bytes made by :func:`serialize`. Raises ``ValueError`` on garbage."""
    return msgpack.unpackb(raw, raw=False, ext_hook=ext_hook, strict_map_key=False)
