"""The wire protocol: every frame any role sends or receives is built and parsed here.

Every message is exactly two frames (a ROUTER adds the peer's identity in front)::

    +---------+------+   +--------------------------+
    | VERSION | KIND |   | msgpack body (a list)    |
    +---------+------+   +--------------------------+
      1 byte   1 byte      shape fixed per KIND, below

Batch pipeline (``W`` worker, ``D`` distributor, ``C`` collector, ``M`` metadata worker):

=========  =====  ===========================================================
kind       route  body
=========  =====  ===========================================================
READY      W→D    [task_type, capacity, free]          join / re-join; credit
WELCOME    D→W    [run, metadata]                      accepted: start working
DATA       D→W    [run, [[seq, payload], ...]]         one or more items
CREDIT     W→D    [n]                                  n more items may be sent
FAIL       W→D    [seq, error]                         user code raised on seq
HEARTBEAT  W↔D    [worker_id] (W→D) / [] (D→W)         liveness
RESET      D→W    []                                   unknown worker: READY again
BYE        W→D    [[seq, ...]]                         leaving; hands back items
END        D→W,C  [run, summary]                       the run is over
RESULT     W→C    [run, task_type, seq, result|None]   one item's result
START      D→C    [run, metadata, [task_type, ...]]    a run begins
SKIP       D→C    [run, task_type, seq]                seq failed for good
ACK        C→D    [run, [[task_type, seq, ack_data|None, error|None], ...]]
FINISHED   C→D    [run]                                handle_finished has run
HELLO      C→D    [collector_id]                       a collector is up: send START
META       M↔D    [metadata] (M→D) / [] (D→M)          metadata and its receipt
=========  =====  ===========================================================

Service mode (``C`` client, ``S`` service, ``SW`` service worker); see
:mod:`zmqpipeline.service`:

=============  ======  ====================================================
kind           route   body
=============  ======  ====================================================
SREADY         SW→S    [task_type]                      free, holds nothing: route to me
REQUEST        C→S     [request_id, task_type, data]    task_type checked by the service
REQUEST        S→SW    [client, request_id, data]       ``client``: routing id
REPLY          SW→S    [client, request_id, data]       also: the worker is free again
REPLY          S→C     [request_id, data]
REQUEST_ERROR  SW→S    [client, request_id, error]      handle_message raised
REQUEST_ERROR  S→C     [request_id, error]              worker error or refusal
HEARTBEAT      S↔SW    [] (S→SW) / [worker_id] (SW→S)   liveness
RESET          S→SW    []                               unknown worker: SREADY again
DISCONNECT     S↔SW    []                               the service stops / worker leaves
=============  ======  ====================================================

An item's id is ``(task_type, seq)``; ``seq`` counts from 0 per task type and run.
Decoding validates frame count, version, kind and body shape, and raises
:class:`~zmqpipeline.errors.ProtocolError` for anything else: callers drop and count it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from .errors import MessageTooLarge, ProtocolError
from .utils.serializer import Packer, deserialize

__all__ = [
    "KIND_NAMES",
    "VERSION",
    "Codec",
    "MessageTooLarge",
    "decode",
]

VERSION = 1

READY = 0x01
WELCOME = 0x02
DATA = 0x03
CREDIT = 0x04
FAIL = 0x05
HEARTBEAT = 0x06
RESET = 0x07
BYE = 0x08
END = 0x09
RESULT = 0x0A
START = 0x0B
SKIP = 0x0C
ACK = 0x0D
FINISHED = 0x0E
META = 0x0F
HELLO = 0x10
# Service mode
SREADY = 0x20
REQUEST = 0x21
REPLY = 0x22
REQUEST_ERROR = 0x23
DISCONNECT = 0x24

KIND_NAMES: dict[int, str] = {
    READY: "READY",
    WELCOME: "WELCOME",
    DATA: "DATA",
    CREDIT: "CREDIT",
    FAIL: "FAIL",
    HEARTBEAT: "HEARTBEAT",
    RESET: "RESET",
    BYE: "BYE",
    END: "END",
    RESULT: "RESULT",
    START: "START",
    SKIP: "SKIP",
    ACK: "ACK",
    FINISHED: "FINISHED",
    META: "META",
    HELLO: "HELLO",
    SREADY: "SREADY",
    REQUEST: "REQUEST",
    REPLY: "REPLY",
    REQUEST_ERROR: "REQUEST_ERROR",
    DISCONNECT: "DISCONNECT",
}

_HEADERS: dict[int, bytes] = {kind: bytes((VERSION, kind)) for kind in KIND_NAMES}

# Body shapes: the type of each top-level field; a kind may have two shapes (by direction).
_SHAPES: dict[int, tuple[tuple[type, ...], ...]] = {
    READY: ((str, int, int),),
    WELCOME: ((int, dict),),
    DATA: ((int, list),),
    CREDIT: ((int,),),
    FAIL: ((int, str),),
    HEARTBEAT: ((), (bytes,)),
    RESET: ((),),
    BYE: ((list,),),
    END: ((int, dict),),
    RESULT: ((int, str, int, (dict, type(None))),),  # type: ignore[dict-item]
    START: ((int, dict, list),),
    SKIP: ((int, str, int),),
    ACK: ((int, list),),
    FINISHED: ((int,),),
    META: ((), (dict,)),
    HELLO: ((bytes,),),
    SREADY: ((str,),),
    REQUEST: ((int, object, object), (bytes, int, object)),
    REPLY: ((bytes, int, object), (int, object)),
    REQUEST_ERROR: ((bytes, int, str), (int, str)),
    DISCONNECT: ((),),
}


def _check_shape(kind: int, body: Any) -> bool:
    if type(body) is not list:
        return False
    size = len(body)
    for shape in _SHAPES[kind]:
        if size != len(shape):
            continue
        for value, expected in zip(body, shape, strict=True):
            # bool is an int to isinstance, but never a count, sequence or run number.
            if not isinstance(value, expected) or (expected is int and type(value) is bool):
                break
        else:
            return True
    return False


def _check_items(kind: int, body: list[Any]) -> bool:
    """Validate the nested lists of DATA, ACK and BYE."""
    if kind == DATA:
        return all(
            type(item) is list and len(item) == 2 and type(item[0]) is int and type(item[1]) is dict
            for item in body[1]
        )
    if kind == ACK:
        return all(
            type(entry) is list
            and len(entry) == 4
            and type(entry[0]) is str
            and type(entry[1]) is int
            and (entry[2] is None or type(entry[2]) is dict)
            and (entry[3] is None or type(entry[3]) is str)
            for entry in body[1]
        )
    if kind == BYE:
        return all(type(seq) is int for seq in body[0])
    return True


def decode(
    frames: list[bytes], accept: Collection[int] | None = None, where: str = ""
) -> tuple[int, list[Any]]:
    """Parse ``[header, body]`` into ``(kind, body)``; raise ``ProtocolError`` if malformed,
    or if ``accept`` is given and the kind is not one of them (``where`` says where it came:
    "from the distributor", "on the ACK socket"...)."""
    if len(frames) != 2:
        raise ProtocolError(f"expected 2 frames, got {len(frames)}", frames, "frame count")
    header, raw = frames
    if len(header) != 2:
        raise ProtocolError(f"header must be 2 bytes, got {len(header)}", frames, "bad header")
    if header[0] != VERSION:
        raise ProtocolError(
            f"protocol version {header[0]} (expected {VERSION})", frames, "wrong version"
        )
    kind = header[1]
    if kind not in _SHAPES:
        raise ProtocolError(f"unknown message kind 0x{kind:02x}", frames, "unknown kind")
    if accept is not None and kind not in accept:
        raise ProtocolError(
            f"{KIND_NAMES[kind]} is not expected {where}".rstrip(), frames, "wrong direction"
        )
    try:
        body = deserialize(raw)
    except Exception as exc:  # msgpack raises several types for garbage
        raise ProtocolError(
            f"undecodable {KIND_NAMES[kind]} body: {exc}", frames, "undecodable body"
        ) from None
    if not _check_shape(kind, body) or not _check_items(kind, body):
        raise ProtocolError(f"malformed {KIND_NAMES[kind]} body", frames, "malformed body")
    return kind, body


class Codec:
    """Builds messages. Holds one reusable packer, so use one ``Codec`` per thread."""

    __slots__ = ("_packer", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self._packer = Packer()
        self.max_bytes = max_bytes

    def encode(self, kind: int, body: list[Any], context: str = "") -> list[bytes]:
        raw = self._packer.pack(body, context)
        if len(raw) > self.max_bytes:
            what = f" for task type {context!r}" if context else ""
            raise MessageTooLarge(
                f"{KIND_NAMES[kind]} message{what} is {len(raw)} bytes, over the "
                f"limit of {self.max_bytes} (max_message_bytes)"
            )
        return [_HEADERS[kind], raw]

    # Named builders keep the frame layout in this one module.
    def ready(self, task_type: str, capacity: int, free: int) -> list[bytes]:
        return self.encode(READY, [task_type, capacity, free])

    def welcome(self, run: int, metadata: dict[str, Any]) -> list[bytes]:
        return self.encode(WELCOME, [run, metadata])

    def data(self, run: int, items: list[list[Any]], task_type: str) -> list[bytes]:
        return self.encode(DATA, [run, items], task_type)

    def credit(self, n: int) -> list[bytes]:
        return self.encode(CREDIT, [n])

    def fail(self, seq: int, error: str) -> list[bytes]:
        return self.encode(FAIL, [seq, error])

    def heartbeat(self, worker_id: bytes | None = None) -> list[bytes]:
        return self.encode(HEARTBEAT, [] if worker_id is None else [worker_id])

    def reset(self) -> list[bytes]:
        return self.encode(RESET, [])

    def bye(self, seqs: list[int]) -> list[bytes]:
        return self.encode(BYE, [seqs])

    def end(self, run: int, summary: dict[str, Any]) -> list[bytes]:
        return self.encode(END, [run, summary])

    def result(
        self, run: int, task_type: str, seq: int, result: dict[str, Any] | None
    ) -> list[bytes]:
        return self.encode(RESULT, [run, task_type, seq, result], task_type)

    def start(self, run: int, metadata: dict[str, Any], task_types: list[str]) -> list[bytes]:
        return self.encode(START, [run, metadata, task_types])

    def skip(self, run: int, task_type: str, seq: int) -> list[bytes]:
        return self.encode(SKIP, [run, task_type, seq])

    def ack(self, run: int, entries: list[list[Any]]) -> list[bytes]:
        return self.encode(ACK, [run, entries])

    def finished(self, run: int) -> list[bytes]:
        return self.encode(FINISHED, [run])

    def hello(self, collector_id: bytes) -> list[bytes]:
        return self.encode(HELLO, [collector_id])

    def meta(self, metadata: dict[str, Any] | None = None) -> list[bytes]:
        return self.encode(META, [] if metadata is None else [metadata])

    # Service mode. ``context`` names the task type in a MessageTooLarge/TypeError.
    def sready(self, task_type: str) -> list[bytes]:
        return self.encode(SREADY, [task_type])

    def request(self, request_id: int, task_type: str, data: Any) -> list[bytes]:
        """C→S."""
        return self.encode(REQUEST, [request_id, task_type, data], task_type)

    def route_request(
        self, client: bytes, request_id: int, data: Any, task_type: str
    ) -> list[bytes]:
        """S→SW."""
        return self.encode(REQUEST, [client, request_id, data], task_type)

    def worker_reply(
        self, client: bytes, request_id: int, data: Any, task_type: str
    ) -> list[bytes]:
        """SW→S."""
        return self.encode(REPLY, [client, request_id, data], task_type)

    def reply(self, request_id: int, data: Any) -> list[bytes]:
        """S→C."""
        return self.encode(REPLY, [request_id, data])

    def worker_error(self, client: bytes, request_id: int, error: str) -> list[bytes]:
        """SW→S."""
        return self.encode(REQUEST_ERROR, [client, request_id, error])

    def request_error(self, request_id: int, error: str) -> list[bytes]:
        """S→C."""
        return self.encode(REQUEST_ERROR, [request_id, error])

    def disconnect(self) -> list[bytes]:
        return self.encode(DISCONNECT, [])
