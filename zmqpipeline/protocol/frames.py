"""Big values as frames of their own, beside a message's msgpack body.

A ``bytes``, ``bytearray`` or ``memoryview`` of at least :data:`FRAME_MIN_BYTES` inside
an item (DATA) or a result (RESULT), in its dicts and lists (up to :data:`MAX_DEPTH`
deep), and a NumPy array of that size, is not packed into the body: the body holds a
small placeholder (msgpack extension ``EXT_FRAME``: the frame's number; for an array,
extension ``EXT_NDARRAY`` with its dtype, shape and frame number) and the value travels
as extra frame N after the body, sent without a copy (pyzmq ``copy=False``)::

    | VERSION | KIND |  | msgpack body |  | frame 0 |  | frame 1 | ...

A message carries at most :data:`MAX_FRAMES` such frames; an item's further big values
are packed into the body as before. A message with frames holds one item (or one result),
so the per-item limit is the message's: body and frames together at most
``max_message_bytes``.

On receipt a frame is not copied: the value arrives as a read-only ``memoryview`` of the
received frame (a NumPy array as a read-only array over it). ``bytes(value)`` makes a copy
a worker may keep or change.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import msgpack  # type: ignore[import-untyped]

from ..errors import SerializationError
from ..utils.extensions import EXT_FRAME, EXT_NDARRAY, array_parts, make_array
from ..utils.serializer import ext_hook

__all__ = [
    "FRAME_MIN_BYTES",
    "MAX_DEPTH",
    "MAX_FRAMES",
    "frame_bytes",
    "frames_hook",
    "split_frames",
    "wrong_key",
]

#: A bytes-like value or array of at least this many bytes travels as a frame of its own.
FRAME_MIN_BYTES = 64 * 1024
#: Extra frames one message may carry (each at most ``max_message_bytes``).
MAX_FRAMES = 16
#: Big values are looked for this many dicts and lists deep (deeper ones stay in the body).
MAX_DEPTH = 32

_BLOBS = (bytes, bytearray, memoryview)
_INDEX = struct.Struct(">I")


def _nbytes(value: Any) -> int:
    return value.nbytes if type(value) is memoryview else len(value)


#: The most elements a list, tuple or dict inside an item or a result may hold: what
#: every receiver decodes (protocol.wire's per-container limit).
MAX_CONTAINER_ITEMS = 1 << 20


def frame_bytes(obj: Any, depth: int = 0) -> int:
    """The bytes of the big values in ``obj`` (those :func:`split_frames` would take out):
    what an item or a result weighs against ``max_in_flight_bytes``. Walks dicts, lists
    and tuples; costs a fraction of a microsecond for a small item. A dict key that is
    neither ``str`` nor ``bytes`` (the receiver refuses it) raises
    :class:`SerializationError`, as :func:`split_frames` does."""
    kind = type(obj)
    if depth > MAX_DEPTH:
        return 0
    if kind is dict or kind is list or kind is tuple:
        if len(obj) > MAX_CONTAINER_ITEMS:
            raise SerializationError(
                f"a {kind.__name__} of {len(obj)} elements: over the limit of "
                f"{MAX_CONTAINER_ITEMS} elements per list or dict that travel"
            )
        if len(obj) > _WALK_IN_C and _nothing_to_walk(obj, kind):
            return 0
        total = 0
        if kind is dict:
            for key, value in obj.items():
                if type(key) is not str and type(key) is not bytes:  # no receiver decodes it
                    raise SerializationError(wrong_key(obj, ()) or "a dict key it refuses")
                if type(value) not in _PLAIN:
                    total += frame_bytes(value, depth + 1)
        else:
            for value in obj:
                if type(value) not in _PLAIN:
                    total += frame_bytes(value, depth + 1)
        return total
    if kind in _BLOBS:
        n = _nbytes(obj)
        return n if n >= FRAME_MIN_BYTES else 0
    if kind.__module__ == "numpy" and hasattr(obj, "nbytes"):
        return int(obj.nbytes) if obj.nbytes >= FRAME_MIN_BYTES else 0
    return 0


def split_frames(obj: Any, frames: list[Any], depth: int = 0) -> Any:
    """``obj`` with its big values replaced by placeholders, which are appended to
    ``frames`` (numbered from its length on entry); ``obj`` itself when it has none (it
    is never changed). Past :data:`MAX_FRAMES`, values stay in the body."""
    kind = type(obj)
    if depth > MAX_DEPTH:
        return obj
    if kind is dict or kind is list or kind is tuple:
        if len(obj) > MAX_CONTAINER_ITEMS:  # no receiver decodes it (wire's limit)
            raise SerializationError(
                f"a {kind.__name__} of {len(obj)} elements: over the limit of "
                f"{MAX_CONTAINER_ITEMS} elements per list or dict that travel"
            )
        if len(obj) > _WALK_IN_C and _nothing_to_walk(obj, kind):
            return obj
        # A container is copied only if something in it became a placeholder.
        out: Any = None
        for key, value in obj.items() if kind is dict else enumerate(obj):
            if kind is dict and type(key) is not str and type(key) is not bytes:
                raise SerializationError(wrong_key(obj, ()) or "a dict key it refuses")
            new = value if type(value) in _PLAIN else split_frames(value, frames, depth + 1)
            if new is not value:
                if out is None:
                    out = dict(obj) if kind is dict else list(obj)
                out[key] = new
        return obj if out is None else out
    if len(frames) >= MAX_FRAMES:
        return obj
    if kind in _BLOBS:
        if _nbytes(obj) < FRAME_MIN_BYTES:
            return obj
        if kind is memoryview and not obj.contiguous:
            obj = obj.tobytes()  # a frame is one contiguous buffer
        frames.append(obj)
        return msgpack.ExtType(EXT_FRAME, _INDEX.pack(len(frames) - 1))
    parts = array_parts(obj)
    if parts is None or parts[2].nbytes < FRAME_MIN_BYTES:
        return obj  # packed inline by the serializer (an extension type)
    dtype, shape, array = parts
    frames.append(memoryview(array).cast("B"))
    return msgpack.ExtType(EXT_NDARRAY, msgpack.packb([dtype, shape, len(frames) - 1]))


def wrong_key(obj: Any, path: tuple[Any, ...]) -> str | None:
    """Where in ``obj`` the first dict key that is neither ``str`` nor ``bytes`` is, and
    its type (``None``: there is none): the receiving side decodes maps with string keys
    only, so a result holding one cannot be delivered. Walked only once a key was found."""
    kind = type(obj)
    if kind is dict:
        for key, value in obj.items():
            if type(key) is not str and type(key) is not bytes:
                where = "".join(f"[{k!r}]" for k in path) or "the top level"
                return (
                    f"a dict key of type {type(key).__name__} ({key!r:.60}) at {where}: "
                    "dict keys must be str or bytes to travel"
                )
            found = wrong_key(value, (*path, key))
            if found:
                return found
    elif kind is list or kind is tuple:
        for index, value in enumerate(obj):
            found = wrong_key(value, (*path, index))
            if found:
                return found
    return None


def _nothing_to_walk(obj: Any, kind: type) -> bool:
    """True if the dict, list or tuple ``obj`` holds no value that may be or hold a big
    one (its values' types, gathered in C: a result of a million counts is not walked in
    Python); a dict key that is neither ``str`` nor ``bytes`` raises
    :class:`SerializationError` (no receiver decodes it)."""
    if kind is dict:
        if not set(map(type, obj)) <= _KEY_TYPES:
            raise SerializationError(wrong_key(obj, ()) or "a dict key it refuses")
        values: Any = obj.values()
    else:
        values = obj
    types = set(map(type, values))
    return types.isdisjoint(_HOLDERS) and not any(t.__module__ == "numpy" for t in types)


_KEY_TYPES = {str, bytes}
#: Values that are never big and hold none: not walked (the common ones).
_PLAIN = frozenset({str, int, float, bool, type(None)})
#: The types the walks go into or take out (with NumPy's).
_HOLDERS = frozenset({*_BLOBS, dict, list, tuple})
#: A container longer than this is first looked at in C (:func:`_nothing_to_walk`); a
#: shorter one is walked at once (the look costs more than it saves on a few elements).
_WALK_IN_C = 16


def frames_hook(extra: list[Any]) -> Callable[[int, bytes], Any]:
    """The msgpack ``ext_hook`` of a message whose extra frames are ``extra``: each
    placeholder becomes its frame (a read-only ``memoryview``, not copied) or the NumPy
    array over it. A placeholder for a frame the message lacks, or a frame used twice,
    is a :class:`SerializationError` (the decoder reports it as a bad message)."""
    used: set[int] = set()

    def hook(code: int, data: bytes) -> Any:
        if code == EXT_FRAME:
            return _frame(extra, used, _INDEX.unpack(data)[0] if len(data) == 4 else -1)
        if code == EXT_NDARRAY:
            dtype, shape, raw = msgpack.unpackb(data)
            if type(raw) is int:
                raw = _frame(extra, used, raw)
            return make_array(dtype, shape, raw)
        return ext_hook(code, data)

    return hook


def _frame(extra: list[Any], used: set[int], index: int) -> Any:
    if not 0 <= index < len(extra) or index in used:
        raise SerializationError(f"placeholder for frame {index}: not in this message")
    used.add(index)
    return memoryview(extra[index]).toreadonly()
