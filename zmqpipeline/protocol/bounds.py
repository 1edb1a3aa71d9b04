"""What one message may decode to, in total: elements and nesting, counted on the msgpack
bytes before anything is built.

msgpack's own limits (``max_array_len``...) hold per container: a body of many small
containers passes them all and still decodes to about 70 times its size (an empty list
is one byte on the wire and 56 in Python). :func:`check_elements` walks the bytes of a
body as msgpack would, counting every element (containers and scalars alike) and
following the nesting, without making a single object; a container that announces more
children than the message may still hold is refused at its header.

Every element takes at least one byte, so a body no longer than its kind's element limit
cannot exceed it: those are not walked (the hot path of small messages pays nothing);
their nesting is bounded by msgpack's own (1024 levels) and their size by their bytes.

One table, :data:`ELEMENT_LIMITS`, says for each kind how many elements and how many
levels its body may hold; :mod:`zmqpipeline.protocol.wire` reads it when it decodes and
:class:`~zmqpipeline.protocol.Codec` when it encodes (a sender learns its message is too
big with a clear error instead of a receiver dropping it).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "ELEMENT_LIMITS",
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "ElementLimit",
    "TooManyElements",
    "check_elements",
]

#: Elements (every msgpack object: lists, maps, keys, values, scalars) one message of a
#: kind carrying user data may decode to. Each decodes to at most 72 bytes of Python
#: objects beyond the bytes it carries (an empty dict and its slot), so a message costs
#: at most its size plus 36 MiB once decoded.
MAX_ELEMENTS = 1 << 19
#: Levels of nesting a message may hold (msgpack's packer refuses deeper than 511, and
#: code that walks the data recursively stays far from Python's recursion limit).
MAX_DEPTH = 512


class ElementLimit(NamedTuple):
    """How many elements a body may hold in total, and how deeply nested."""

    max_elements: int
    max_depth: int


class TooManyElements(ValueError):
    """A body holds more elements or levels than its kind allows (or is cut short)."""


#: Kinds not named here (control kinds, at most 64 KiB: never walked) get
#: :data:`USER_LIMIT` if they carry user data.
USER_LIMIT = ElementLimit(MAX_ELEMENTS, MAX_DEPTH)
ELEMENT_LIMITS: dict[str, ElementLimit] = {
    name: USER_LIMIT
    for name in (
        "WELCOME",
        "DATA",
        "END",
        "RESULT",
        "START",
        "ACK",
        "META",
        "REQUEST",
        "JOB",
        "WORKER_REPLY",
        "REPLY",
        "CONTROL_REPLY",
        "PUSH",
    )
}


def _table() -> tuple[bytes, tuple[int, ...]]:
    """For each first byte of a msgpack object: what it is (``_SCALAR``...) and its
    argument (bytes to skip, or bytes of the length that follows)."""
    kind = bytearray(256)
    arg = [0] * 256
    for b in range(256):
        if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):  # fixint, nil, false, true
            kind[b] = _SCALAR
        elif 0x80 <= b <= 0x8F:
            kind[b], arg[b] = _FIXMAP, b & 0x0F
        elif 0x90 <= b <= 0x9F:
            kind[b], arg[b] = _FIXARRAY, b & 0x0F
        elif 0xA0 <= b <= 0xBF:
            kind[b], arg[b] = _SCALAR, b & 0x1F  # fixstr: its bytes follow
        else:
            kind[b] = _BAD  # 0xc1 is never used
    fixed = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}  # float, uint
    fixed.update({0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8})  # int
    fixed.update({0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17})  # fixext: type + data
    for b, size in fixed.items():
        kind[b], arg[b] = _SCALAR, size
    for b, size in {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}.items():
        kind[b], arg[b] = _SIZED, size  # bin 8/16/32, str 8/16/32
    for b, size in {0xC7: 1, 0xC8: 2, 0xC9: 4}.items():
        kind[b], arg[b] = _EXT, size  # ext 8/16/32: length, type, data
    for b, size in {0xDC: 2, 0xDD: 4}.items():
        kind[b], arg[b] = _ARRAY, size
    for b, size in {0xDE: 2, 0xDF: 4}.items():
        kind[b], arg[b] = _MAP, size
    return bytes(kind), tuple(arg)


_SCALAR, _FIXARRAY, _FIXMAP, _SIZED, _EXT, _ARRAY, _MAP, _BAD = range(8)
_KIND, _ARG = _table()


def check_elements(raw: bytes, limit: ElementLimit) -> int:
    """The number of elements in the msgpack object ``raw`` starts with; raise
    :class:`TooManyElements` as soon as it is known to exceed ``limit`` (a container's
    header announcing too many children, or too deep), or if ``raw`` ends too soon.
    Builds no object: the cost is a few hundred nanoseconds an element."""
    max_elements, max_depth = limit
    kinds, args, end = _KIND, _ARG, len(raw)
    total = 1  # elements announced so far (the top object included)
    left = 1  # children still to read at the open level
    outer: list[int] = []  # ... at each level around it
    pos = 0
    try:
        while True:
            if not left:
                if not outer:
                    break
                left = outer.pop()
                continue
            left -= 1
            b = raw[pos]
            pos += 1
            kind = kinds[b]
            if kind == _SCALAR:
                pos += args[b]
                continue
            if kind == _FIXARRAY or kind == _FIXMAP:
                n = args[b]
            elif kind == _SIZED or kind == _EXT:
                size = args[b]
                pos += size + int.from_bytes(raw[pos : pos + size], "big") + (kind == _EXT)
                continue
            elif kind == _ARRAY or kind == _MAP:
                size = args[b]
                n = int.from_bytes(raw[pos : pos + size], "big")
                pos += size
            else:
                raise TooManyElements(f"byte 0x{b:02x} at {pos - 1} starts no msgpack object")
            if kind == _FIXMAP or kind == _MAP:
                n *= 2  # keys and values
            if n:
                total += n
                if total > max_elements:
                    raise TooManyElements(f"more than {max_elements} elements")
                outer.append(left)
                left = n
                if len(outer) > max_depth:
                    raise TooManyElements(f"nested deeper than {max_depth} levels")
    except IndexError:
        raise TooManyElements("the body ends inside an object") from None
    if pos > end:
        raise TooManyElements("the body ends inside an object")
    return total
