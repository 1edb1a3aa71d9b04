"""The wire protocol: every frame any role sends or receives is built and parsed here.

Every message is exactly two frames (a ROUTER adds the peer's identity in front)::

    +---------+------+   +--------------------------+
    | VERSION | KIND |   | msgpack body (a list)    |
    +---------+------+   +--------------------------+
      1 byte   1 byte      one shape per KIND, below

Each kind travels one way (or, for END, from one sender to two roles) with one body shape,
and decodes to one immutable record with named fields (the class named in the table).

Batch pipeline (``W`` worker, ``D`` distributor, ``C`` collector, ``M`` metadata worker).
The distributor's DEALER talks to the collector's ROUTER at the ACK endpoint; workers push
results to the collector's PULL at its endpoint.

=========  =====  ===========================================================
kind       route  body (record fields)
=========  =====  ===========================================================
READY      W→D    task_type, capacity, free, threads join / re-join; credit
WELCOME    D→W    run, metadata                      accepted: start working
DATA       D→W    run, items: [[seq, payload], ...]  one or more items
CREDIT     W→D    n                                  n more items may be sent
FAIL       W→D    seq, error, exc_types              user code raised on seq
HEARTBEAT  W→D    worker_id                          the worker is alive
ALIVE      D→W    (empty)                            the distributor is alive
RESET      D→W    (empty)                            unknown worker: READY again
BYE        W→D    seqs                               leaving; hands back items
RECALL     D→W    n                                  hand back up to n unstarted items
HANDBACK   W→D    seqs                               the items RECALL asked for
END        D→W,C  run, summary                       the run is over
RESULT     W→C    run, task_type, worker_id, items: [[seq, result], ...]
PING       D→C    run                                the distributor is alive
HELLO      C→D    collector_id                       answers PING: the collector is up
START      D→C    run, metadata, task_types, forward, quiet  a run begins
SKIP       D→C    run, task_type, seq                seq failed for good
ACK        C→D    run, entries: [[task_type, seq, ack_data, error, worker_id, result], ...]
FINISHED   C→D    run                                handle_finished has run
META       M→D    metadata                           the run's metadata
META_OK    D→M    (empty)                            metadata received
=========  =====  ===========================================================

Service mode (``C`` client, ``S`` service, ``SW`` service worker); see
:mod:`zmqpipeline.service`:

=============  ======  ====================================================
kind           route   body (record fields)
=============  ======  ====================================================
SREADY         SW→S    task_type                  free, holds nothing: route to me
REQUEST        C→S     request_id, task_type, data
JOB            S→SW    client, request_id, data   ``client``: routing id
WORKER_REPLY   SW→S    client, request_id, data   also: the worker is free again
REPLY          S→C     request_id, data
WORKER_ERROR   SW→S    client, request_id, error  handle_message raised
REQUEST_ERROR  S→C     request_id, error          worker error or refusal
HEARTBEAT      SW→S    worker_id
ALIVE          S→SW    (empty)
RESET          S→SW    (empty)                    unknown worker: SREADY again
DISCONNECT     S↔SW    (empty)                    the service stops / worker leaves
=============  ======  ====================================================

Operating a run (``O`` an operator: ``zmqpipeline status ...`` or :class:`zmqpipeline.Control`),
on the distributor's control endpoint; see :mod:`zmqpipeline.control`:

=============  =====  ====================================================
kind           route  body (record fields)
=============  =====  ====================================================
CONTROL        O→D    request_id, command, args      status, pause, ... (a dict of args)
CONTROL_REPLY  D→O    request_id, ok, body           the new state, the status, or the error
=============  =====  ====================================================

Streaming stages (see :mod:`zmqpipeline.stages`): START's ``forward`` lists the task types
whose results feed a stage, ``quiet`` those whose results the collector does not pass to
``handle_collection``; for a ``forward`` type, an item's first ACK entry carries the
worker's result (``result``; ``None`` on every other entry, duplicates included).

Pushing items into an open-ended task (``P`` a pusher: ``zmqpipeline push`` or
:class:`zmqpipeline.Pusher`), on the distributor's push endpoint; see
:mod:`zmqpipeline.pusher`:

==========  =====  ======================================================
kind        route  body (record fields)
==========  =====  ======================================================
PUSH        P→D    request_id, task_type, items    items: a list of dicts
PUSH_CLOSE  P→D    request_id, task_type           no more items: the task may finish
PUSH_REPLY  D→P    request_id, ok, error, accepted accepted: items taken
==========  =====  ======================================================

An item's id is ``(task_type, seq)``; ``seq`` counts from 0 per task type and run.

Decoding is bounded before anything is built: the whole message's size is checked against
the kind's byte limit, and msgpack refuses any array, map, string or binary longer than
the kind's shape allows (a "bomb" of tiny elements is refused at its first header).
Anything malformed raises :class:`~zmqpipeline.errors.ProtocolError`: callers drop and
count it. A peer speaking another protocol version is refused the same way.

To add a kind: a record class, a number, a line in ``_SPECS`` (fields' types and limits),
a builder on :class:`Codec`, and a line in the table above.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, NamedTuple

import msgpack  # type: ignore[import-untyped]

from .errors import MessageTooLarge, ProtocolError
from .utils.serializer import Packer, _ext_hook

__all__ = [
    "CONTROL_MAX_BYTES",
    "KIND_NAMES",
    "VERSION",
    "Codec",
    "decode",
    "kind_of",
]

VERSION = 3  # 3: START's forward/quiet lists, ACK entries' result (streaming stages)

#: Largest message of a control kind (no user data in it) any role accepts.
CONTROL_MAX_BYTES = 64 * 1024
#: Longest error text a FAIL or WORKER_ERROR carries (the start and end of a traceback).
ERROR_MAX_CHARS = 16 * 1024

# -- records ---------------------------------------------------------------------------


class Ready(NamedTuple):
    task_type: str
    capacity: int
    free: int
    threads: int


class Recall(NamedTuple):
    n: int


class HandBack(NamedTuple):
    seqs: list[int]


class Welcome(NamedTuple):
    run: int
    metadata: dict[str, Any]


class Data(NamedTuple):
    run: int
    items: list[list[Any]]


class Credit(NamedTuple):
    n: int


class Fail(NamedTuple):
    seq: int
    error: str
    exc_types: list[str]


class Heartbeat(NamedTuple):
    worker_id: bytes


class Alive(NamedTuple):
    pass


class Reset(NamedTuple):
    pass


class Bye(NamedTuple):
    seqs: list[int]


class End(NamedTuple):
    run: int
    summary: dict[str, Any]


class Result(NamedTuple):
    run: int
    task_type: str
    worker_id: bytes
    items: list[list[Any]]  # [[seq, result or None], ...]


class Ping(NamedTuple):
    run: int


class Hello(NamedTuple):
    collector_id: bytes


class Start(NamedTuple):
    run: int
    metadata: dict[str, Any]
    task_types: list[str]
    forward: list[str]  # results of these task types ride on their ACK (they feed stages)
    quiet: list[str]  # results of these are ACKed (and forwarded) without handle_collection


class Skip(NamedTuple):
    run: int
    task_type: str
    seq: int


class Ack(NamedTuple):
    run: int
    entries: list[list[Any]]


class Finished(NamedTuple):
    run: int


class Meta(NamedTuple):
    metadata: dict[str, Any]


class MetaOk(NamedTuple):
    pass


class SReady(NamedTuple):
    task_type: str


class Request(NamedTuple):
    request_id: int
    task_type: str
    data: Any


class Job(NamedTuple):
    client: bytes
    request_id: int
    data: Any


class WorkerReply(NamedTuple):
    client: bytes
    request_id: int
    data: Any


class Reply(NamedTuple):
    request_id: int
    data: Any


class WorkerError(NamedTuple):
    client: bytes
    request_id: int
    error: str


class RequestError(NamedTuple):
    request_id: int
    error: str


class Disconnect(NamedTuple):
    pass


class Control(NamedTuple):
    request_id: int
    command: str
    args: dict[str, Any]


class ControlReply(NamedTuple):
    request_id: int
    ok: bool
    body: dict[str, Any]


class Push(NamedTuple):
    request_id: int
    task_type: str
    items: list[dict[str, Any]]


class PushClose(NamedTuple):
    request_id: int
    task_type: str


class PushReply(NamedTuple):
    request_id: int
    ok: bool
    error: str
    accepted: int


# -- kinds -----------------------------------------------------------------------------

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
ALIVE = 0x11
PING = 0x12
META_OK = 0x13
RECALL = 0x14
HANDBACK = 0x15
SREADY = 0x20
REQUEST = 0x21
REPLY = 0x22
REQUEST_ERROR = 0x23
DISCONNECT = 0x24
JOB = 0x25
WORKER_REPLY = 0x26
WORKER_ERROR = 0x27
CONTROL = 0x30
CONTROL_REPLY = 0x31
PUSH = 0x40
PUSH_CLOSE = 0x41
PUSH_REPLY = 0x42

_NONE = type(None)
_ANY = object
_CONTROL = CONTROL_MAX_BYTES
_USER = 0  # a kind carrying user data: bounded by the socket's max_message_bytes


class _Spec(NamedTuple):
    record: type[Any]
    fields: tuple[Any, ...]  # the type (or types) of each field
    max_bytes: int
    max_len: int  # longest array or map anywhere in the body


_LIST_LIMIT = 1 << 20  # arrays/maps inside user data, and item lists

_SPECS: dict[int, _Spec] = {
    READY: _Spec(Ready, (str, int, int, int), _CONTROL, 8),
    RECALL: _Spec(Recall, (int,), _CONTROL, 8),
    HANDBACK: _Spec(HandBack, (list,), _CONTROL, 4096),
    WELCOME: _Spec(Welcome, (int, dict), _USER, _LIST_LIMIT),
    DATA: _Spec(Data, (int, list), _USER, _LIST_LIMIT),
    CREDIT: _Spec(Credit, (int,), _CONTROL, 8),
    FAIL: _Spec(Fail, (int, str, list), _CONTROL, 64),
    HEARTBEAT: _Spec(Heartbeat, (bytes,), _CONTROL, 8),
    ALIVE: _Spec(Alive, (), _CONTROL, 8),
    RESET: _Spec(Reset, (), _CONTROL, 8),
    BYE: _Spec(Bye, (list,), _CONTROL, 4096),
    END: _Spec(End, (int, dict), _USER, _LIST_LIMIT),
    RESULT: _Spec(Result, (int, str, bytes, list), _USER, _LIST_LIMIT),
    PING: _Spec(Ping, (int,), _CONTROL, 8),
    HELLO: _Spec(Hello, (bytes,), _CONTROL, 8),
    START: _Spec(Start, (int, dict, list, list, list), _USER, _LIST_LIMIT),
    SKIP: _Spec(Skip, (int, str, int), _CONTROL, 8),
    ACK: _Spec(Ack, (int, list), _USER, _LIST_LIMIT),
    FINISHED: _Spec(Finished, (int,), _CONTROL, 8),
    META: _Spec(Meta, (dict,), _USER, _LIST_LIMIT),
    META_OK: _Spec(MetaOk, (), _CONTROL, 8),
    SREADY: _Spec(SReady, (str,), _CONTROL, 8),
    REQUEST: _Spec(Request, (int, str, _ANY), _USER, _LIST_LIMIT),
    JOB: _Spec(Job, (bytes, int, _ANY), _USER, _LIST_LIMIT),
    WORKER_REPLY: _Spec(WorkerReply, (bytes, int, _ANY), _USER, _LIST_LIMIT),
    REPLY: _Spec(Reply, (int, _ANY), _USER, _LIST_LIMIT),
    WORKER_ERROR: _Spec(WorkerError, (bytes, int, str), _CONTROL, 8),
    REQUEST_ERROR: _Spec(RequestError, (int, str), _CONTROL, 8),
    DISCONNECT: _Spec(Disconnect, (), _CONTROL, 8),
    # Operating a run: a command is small; a status reply grows with workers and failures.
    CONTROL: _Spec(Control, (int, str, dict), _CONTROL, 4096),
    CONTROL_REPLY: _Spec(ControlReply, (int, bool, dict), _USER, _LIST_LIMIT),
    # Pushing items into an open-ended task.
    PUSH: _Spec(Push, (int, str, list), _USER, _LIST_LIMIT),
    PUSH_CLOSE: _Spec(PushClose, (int, str), _CONTROL, 8),
    PUSH_REPLY: _Spec(PushReply, (int, bool, str, int), _CONTROL, 8),
}

KIND_NAMES: dict[int, str] = {
    kind: name
    for name, kind in list(globals().items())
    if name.isupper() and isinstance(kind, int) and kind in _SPECS
}
_KIND_OF: dict[type[Any], int] = {spec.record: kind for kind, spec in _SPECS.items()}
_HEADERS: dict[int, bytes] = {kind: bytes((VERSION, kind)) for kind in _SPECS}


def kind_of(record: Any) -> int:
    """The kind number of a decoded record (``kind_of(Ready(...)) == READY``)."""
    return _KIND_OF[type(record)]


def _valid(value: Any, expected: Any) -> bool:
    # bool is an int to isinstance, but never a count, sequence or run number.
    if expected is int:
        return type(value) is int
    return isinstance(value, expected)


def _check_nested(kind: int, body: list[Any]) -> bool:
    """Validate the nested lists of DATA, ACK, BYE, FAIL, START and PUSH."""
    if kind == DATA:
        return all(
            type(item) is list and len(item) == 2 and type(item[0]) is int and type(item[1]) is dict
            for item in body[1]
        )
    if kind == ACK:
        return all(
            type(entry) is list
            and len(entry) == 6
            and type(entry[0]) is str
            and type(entry[1]) is int
            and (entry[2] is None or type(entry[2]) is dict)
            and (entry[3] is None or type(entry[3]) is str)
            and type(entry[4]) is bytes
            and (entry[5] is None or type(entry[5]) is dict)
            for entry in body[1]
        )
    if kind == RESULT:
        return all(
            type(item) is list
            and len(item) == 2
            and type(item[0]) is int
            and (item[1] is None or type(item[1]) is dict)
            for item in body[3]
        )
    if kind in (BYE, HANDBACK):
        return all(type(seq) is int for seq in body[0])
    if kind == FAIL:
        return all(type(name) is str for name in body[2])
    if kind == START:
        return all(type(name) is str for names in body[2:] for name in names)
    if kind == PUSH:
        return all(type(item) is dict for item in body[2])
    return True


def decode(
    frames: list[bytes],
    accept: Collection[int] | None = None,
    where: str = "",
    max_bytes: int = 1 << 62,
) -> Any:
    """Parse ``[header, body]`` into its record; raise ``ProtocolError`` if malformed,
    over the size limits (``max_bytes`` for kinds that carry user data, the kind's own
    for the others), or if ``accept`` is given and the kind is not one of them (``where``
    says where it came: "from the distributor", "on the ACK socket"...)."""
    if len(frames) != 2:
        raise ProtocolError(f"expected 2 frames, got {len(frames)}", frames, "frame count")
    header, raw = frames
    if len(header) != 2:
        raise ProtocolError(f"header must be 2 bytes, got {len(header)}", frames, "bad header")
    if header[0] != VERSION:
        raise ProtocolError(
            f"protocol version {header[0]} (this side speaks {VERSION}): a peer of another "
            "zmqpipeline release?",
            frames,
            "wrong version",
        )
    kind = header[1]
    spec = _SPECS.get(kind)
    if spec is None:
        raise ProtocolError(f"unknown message kind 0x{kind:02x}", frames, "unknown kind")
    name = KIND_NAMES[kind]
    if accept is not None and kind not in accept:
        raise ProtocolError(f"{name} is not expected {where}".rstrip(), frames, "wrong direction")
    limit = spec.max_bytes or max_bytes
    if len(raw) > limit:
        raise ProtocolError(f"{name} of {len(raw)} bytes, over {limit}", frames, "too large")
    try:
        body = msgpack.unpackb(
            raw,
            ext_hook=_ext_hook,
            max_array_len=spec.max_len,
            max_map_len=spec.max_len,
            max_ext_len=1024,
        )
    except Exception as exc:  # msgpack raises several types for garbage and for limits
        raise ProtocolError(f"undecodable {name} body: {exc}", frames, "undecodable body") from None
    fields = spec.fields
    if (
        type(body) is not list
        or len(body) != len(fields)
        or not all(_valid(v, t) for v, t in zip(body, fields, strict=True))
        or not _check_nested(kind, body)
    ):
        raise ProtocolError(f"malformed {name} body", frames, "malformed body")
    return spec.record(*body)


def clip_error(text: str) -> str:
    """``text`` cut to :data:`ERROR_MAX_CHARS`, keeping its start and its last lines."""
    if len(text) <= ERROR_MAX_CHARS:
        return text
    half = ERROR_MAX_CHARS // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


class Codec:
    """Builds messages. Holds one reusable packer, so use one ``Codec`` per thread."""

    __slots__ = ("_packer", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self._packer = Packer()
        self.max_bytes = max_bytes

    def encode(self, kind: int, body: list[Any], context: str = "") -> list[bytes]:
        raw = self._packer.pack(body, context)
        limit = _SPECS[kind].max_bytes or self.max_bytes
        if len(raw) > limit:
            what = f" for task type {context!r}" if context else ""
            raise MessageTooLarge(
                f"{KIND_NAMES[kind]} message{what} is {len(raw)} bytes, over the "
                f"limit of {limit} (max_message_bytes)"
            )
        return [_HEADERS[kind], raw]

    # Named builders keep the frame layout in this one module.
    def ready(self, task_type: str, capacity: int, free: int, threads: int = 1) -> list[bytes]:
        return self.encode(READY, [task_type, capacity, free, threads])

    def recall(self, n: int) -> list[bytes]:
        return self.encode(RECALL, [n])

    def hand_back(self, seqs: list[int]) -> list[bytes]:
        return self.encode(HANDBACK, [seqs])

    def welcome(self, run: int, metadata: dict[str, Any]) -> list[bytes]:
        return self.encode(WELCOME, [run, metadata])

    def data(self, run: int, items: list[list[Any]], task_type: str) -> list[bytes]:
        return self.encode(DATA, [run, items], task_type)

    def credit(self, n: int) -> list[bytes]:
        return self.encode(CREDIT, [n])

    def fail(self, seq: int, error: str, exc_types: list[str]) -> list[bytes]:
        return self.encode(FAIL, [seq, clip_error(error), exc_types[:32]])

    def heartbeat(self, worker_id: bytes) -> list[bytes]:
        return self.encode(HEARTBEAT, [worker_id])

    def alive(self) -> list[bytes]:
        return self.encode(ALIVE, [])

    def reset(self) -> list[bytes]:
        return self.encode(RESET, [])

    def bye(self, seqs: list[int]) -> list[bytes]:
        return self.encode(BYE, [seqs])

    def end(self, run: int, summary: dict[str, Any]) -> list[bytes]:
        return self.encode(END, [run, summary])

    def result(
        self, run: int, task_type: str, seq: int, result: dict[str, Any] | None, worker_id: bytes
    ) -> list[bytes]:
        """One item's result alone (see :meth:`result_item` and :meth:`results` for many)."""
        return self.results(run, task_type, worker_id, [self.result_item(seq, result, task_type)])

    def result_item(self, seq: int, result: dict[str, Any] | None, task_type: str) -> bytes:
        """One ``[seq, result]`` entry, packed on its own: a result msgpack cannot carry
        fails here, alone, and entries join a batch without being packed again."""
        return self._packer.pack([seq, result], task_type)

    def results(
        self, run: int, task_type: str, worker_id: bytes, packed_items: list[bytes]
    ) -> list[bytes]:
        """RESULT for entries packed by :meth:`result_item` (msgpack arrays concatenate)."""
        head = self._packer.pack([run, task_type, worker_id])
        raw = b"".join([b"\x94", head[1:], _array_header(len(packed_items)), *packed_items])
        if len(raw) > self.max_bytes:
            raise MessageTooLarge(
                f"RESULT message for task type {task_type!r} is {len(raw)} bytes, over the "
                f"limit of {self.max_bytes} (max_message_bytes)"
            )
        return [_HEADERS[RESULT], raw]

    def ping(self, run: int) -> list[bytes]:
        return self.encode(PING, [run])

    def hello(self, collector_id: bytes) -> list[bytes]:
        return self.encode(HELLO, [collector_id])

    def start(
        self,
        run: int,
        metadata: dict[str, Any],
        task_types: list[str],
        forward: list[str] | None = None,
        quiet: list[str] | None = None,
    ) -> list[bytes]:
        return self.encode(START, [run, metadata, task_types, forward or [], quiet or []])

    def skip(self, run: int, task_type: str, seq: int) -> list[bytes]:
        return self.encode(SKIP, [run, task_type, seq])

    def ack(self, run: int, entries: list[list[Any]]) -> list[bytes]:
        return self.encode(ACK, [run, entries])

    def finished(self, run: int) -> list[bytes]:
        return self.encode(FINISHED, [run])

    def meta(self, metadata: dict[str, Any]) -> list[bytes]:
        return self.encode(META, [metadata])

    def meta_ok(self) -> list[bytes]:
        return self.encode(META_OK, [])

    # Service mode. ``task_type`` names the task type in a MessageTooLarge/TypeError.
    def sready(self, task_type: str) -> list[bytes]:
        return self.encode(SREADY, [task_type])

    def request(self, request_id: int, task_type: str, data: Any) -> list[bytes]:
        return self.encode(REQUEST, [request_id, task_type, data], task_type)

    def job(self, client: bytes, request_id: int, data: Any, task_type: str) -> list[bytes]:
        return self.encode(JOB, [client, request_id, data], task_type)

    def worker_reply(
        self, client: bytes, request_id: int, data: Any, task_type: str
    ) -> list[bytes]:
        return self.encode(WORKER_REPLY, [client, request_id, data], task_type)

    def reply(self, request_id: int, data: Any) -> list[bytes]:
        return self.encode(REPLY, [request_id, data])

    def worker_error(self, client: bytes, request_id: int, error: str) -> list[bytes]:
        return self.encode(WORKER_ERROR, [client, request_id, clip_error(error)])

    def request_error(self, request_id: int, error: str) -> list[bytes]:
        return self.encode(REQUEST_ERROR, [request_id, clip_error(error)])

    def disconnect(self) -> list[bytes]:
        return self.encode(DISCONNECT, [])

    # Operating a run.
    def control(self, request_id: int, command: str, args: dict[str, Any]) -> list[bytes]:
        return self.encode(CONTROL, [request_id, command, args])

    def control_reply(self, request_id: int, ok: bool, body: dict[str, Any]) -> list[bytes]:
        return self.encode(CONTROL_REPLY, [request_id, ok, body])

    # Pushing items into an open-ended task.
    def push(self, request_id: int, task_type: str, items: list[dict[str, Any]]) -> list[bytes]:
        return self.encode(PUSH, [request_id, task_type, items], task_type)

    def push_close(self, request_id: int, task_type: str) -> list[bytes]:
        return self.encode(PUSH_CLOSE, [request_id, task_type])

    def push_reply(self, request_id: int, ok: bool, error: str, accepted: int) -> list[bytes]:
        return self.encode(PUSH_REPLY, [request_id, ok, clip_error(error), accepted])
