"""Kinds, their body shapes and limits, and :func:`decode` (see :mod:`zmqpipeline.protocol`
for the tables)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, NamedTuple

import msgpack  # type: ignore[import-untyped]

from ..errors import ProtocolError
from ..utils.serializer import ext_hook
from .bounds import ELEMENT_LIMITS, TooManyElements, check_elements
from .frames import MAX_CONTAINER_ITEMS, MAX_FRAMES, frames_hook
from .records import (
    Ack,
    Alive,
    Bye,
    Control,
    ControlReply,
    Credit,
    Data,
    Disconnect,
    End,
    Fail,
    Finished,
    HandBack,
    Heartbeat,
    Hello,
    Job,
    Meta,
    MetaOk,
    Ping,
    Push,
    PushClose,
    PushReply,
    Ready,
    Recall,
    Reply,
    Request,
    RequestError,
    Reset,
    Result,
    Skip,
    SReady,
    Start,
    Welcome,
    WorkerError,
    WorkerReply,
)
from .tokens import KEY_BYTES, TOKEN_BYTES, runs

__all__ = [
    "ACK",
    "ALIVE",
    "BYE",
    "CONTROL",
    "CONTROL_MAX_BYTES",
    "CONTROL_REPLY",
    "CREDIT",
    "DATA",
    "DISCONNECT",
    "END",
    "ERROR_MAX_CHARS",
    "FAIL",
    "FINISHED",
    "FRAMED_KINDS",
    "HANDBACK",
    "HEARTBEAT",
    "HELLO",
    "JOB",
    "KIND_NAMES",
    "META",
    "META_OK",
    "PING",
    "PUSH",
    "PUSH_CLOSE",
    "PUSH_REPLY",
    "READY",
    "RECALL",
    "REPLY",
    "REQUEST",
    "REQUEST_ERROR",
    "RESET",
    "RESULT",
    "SKIP",
    "SREADY",
    "START",
    "VERSION",
    "WELCOME",
    "WORKER_ERROR",
    "WORKER_REPLY",
    "clip_error",
    "decode",
    "kind_of",
]

#: 3: START's forward/quiet lists, ACK entries' result (streaming stages); 4: ACK entries'
#: ``first`` (the collector handled the id in this ACK, it is no duplicate's re-ACK);
#: 5: an ACK's entries in groups (one per RESULT: its task type and worker), a column
#: per field; 6: DATA and RESULT items carry an item token, START the run's token key
#: (see :mod:`zmqpipeline.protocol.tokens`)
VERSION = 6

#: Largest message of a control kind (no user data in it) any role accepts.
CONTROL_MAX_BYTES = 64 * 1024
#: Longest error text a FAIL or WORKER_ERROR carries (the start and end of a traceback).
ERROR_MAX_CHARS = 16 * 1024

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


_LIST_LIMIT = MAX_CONTAINER_ITEMS  # arrays/maps inside user data, and item lists

SPECS: dict[int, _Spec] = {
    READY: _Spec(Ready, (str, int, int, int), _CONTROL, 8),
    RECALL: _Spec(Recall, (int,), _CONTROL, 8),
    HANDBACK: _Spec(HandBack, (list,), _CONTROL, 4096),
    WELCOME: _Spec(Welcome, (int, dict, dict), _USER, _LIST_LIMIT),
    DATA: _Spec(Data, (int, list, bytes), _USER, _LIST_LIMIT),
    CREDIT: _Spec(Credit, (int,), _CONTROL, 8),
    FAIL: _Spec(Fail, (int, str, list), _CONTROL, 64),
    HEARTBEAT: _Spec(Heartbeat, (bytes,), _CONTROL, 8),
    ALIVE: _Spec(Alive, (), _CONTROL, 8),
    RESET: _Spec(Reset, (), _CONTROL, 8),
    BYE: _Spec(Bye, (list,), _CONTROL, 4096),
    END: _Spec(End, (int, dict), _USER, _LIST_LIMIT),
    RESULT: _Spec(Result, (int, str, bytes, list, bytes), _USER, _LIST_LIMIT),
    PING: _Spec(Ping, (int,), _CONTROL, 8),
    HELLO: _Spec(Hello, (bytes,), _CONTROL, 8),
    START: _Spec(Start, (int, dict, list, list, list, bytes), _USER, _LIST_LIMIT),
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
    if name.isupper() and isinstance(kind, int) and kind in SPECS
}
_KIND_OF: dict[type[Any], int] = {spec.record: kind for kind, spec in SPECS.items()}
HEADERS: dict[int, bytes] = {kind: bytes((VERSION, kind)) for kind in SPECS}
#: Each kind's total element and nesting limit (:mod:`zmqpipeline.protocol.bounds`).
LIMITS = {
    kind: ELEMENT_LIMITS[KIND_NAMES[kind]] for kind in SPECS if KIND_NAMES[kind] in ELEMENT_LIMITS
}
#: The kinds whose big values may travel as extra frames after the body (see
#: :mod:`zmqpipeline.protocol.frames`); every other kind is exactly two frames.
FRAMED_KINDS = frozenset({DATA, RESULT})


def kind_of(record: Any) -> int:
    """The kind number of a decoded record (``kind_of(Ready(...)) == READY``)."""
    return _KIND_OF[type(record)]


def _tokens_ok(body: list[Any], items: int, tokens: int) -> bool:
    """The tokens of a DATA or RESULT (if it has them): whole tokens, no more than items;
    a DATA's cover exactly as many seqs as it has items."""
    if len(body) <= tokens:
        return True
    blob, n = body[tokens], len(body[items])
    if len(blob) % TOKEN_BYTES or len(blob) > TOKEN_BYTES * n:
        return False
    if tokens != 2 or not blob:
        return True
    if len(blob) == TOKEN_BYTES:  # one token (a lone item's, a batch of fresh ones)
        return int.from_bytes(blob[8:12], "little") == n
    return sum(count for _, count in runs(blob)) == n


def _items_ok(body: list[Any]) -> bool:  # DATA: [[seq, payload], ...], tokens
    for item in body[1]:
        if type(item) is not list or len(item) != 2:
            return False
        if type(item[0]) is not int or type(item[1]) is not dict:
            return False
    return _tokens_ok(body, 1, 2)


def _column_ok(column: Any, n: int, kind: type[Any]) -> bool:
    """An ACK group's column: ``None`` (every item has the default) or ``n`` values, each
    ``None`` or of ``kind``."""
    if column is None:
        return True
    if type(column) is not list or len(column) != n:
        return False
    return all(value is None or type(value) is kind for value in column)


def _acks_ok(body: list[Any]) -> bool:  # ACK: [[type, by, seqs, ack data, errors, results, firsts]]
    for group in body[1]:
        if type(group) is not list or len(group) != 7:
            return False
        task_type, executed_by, seqs, ack_data, errors, results, firsts = group
        if type(task_type) is not str or type(executed_by) is not bytes or type(seqs) is not list:
            return False
        for seq in seqs:
            if type(seq) is not int:
                return False
        n = len(seqs)
        if not (
            _column_ok(ack_data, n, dict)
            and _column_ok(errors, n, str)
            and _column_ok(results, n, dict)
        ):
            return False
        if firsts is not None and (
            type(firsts) is not list
            or len(firsts) != n
            or not all(type(first) is bool for first in firsts)
        ):
            return False
    return True


def _results_ok(body: list[Any]) -> bool:  # RESULT: [[seq, result or None], ...], tokens
    for item in body[3]:
        if type(item) is not list or len(item) != 2 or type(item[0]) is not int:
            return False
        if item[1] is not None and type(item[1]) is not dict:
            return False
    return _tokens_ok(body, 3, 4)


def _all_of(index: int, kind: type[Any]) -> Callable[[list[Any]], bool]:
    """The list at ``body[index]`` holds ``kind`` only (exactly: no bool for an int)."""

    def check(body: list[Any]) -> bool:
        return all(type(value) is kind for value in body[index])

    return check


def _start_ok(body: list[Any]) -> bool:  # START: three lists of task names, a key
    if len(body) > 5 and len(body[5]) not in (0, KEY_BYTES):
        return False
    return all(type(name) is str for names in body[2:5] for name in names)


#: The lists inside bodies, checked item by item (kinds not named here have none).
_NESTED: dict[int, Callable[[list[Any]], bool]] = {
    DATA: _items_ok,
    ACK: _acks_ok,
    RESULT: _results_ok,
    BYE: _all_of(0, int),
    HANDBACK: _all_of(0, int),
    FAIL: _all_of(2, str),
    START: _start_ok,
    PUSH: _all_of(2, dict),
}


#: Kinds whose last field may be left out (the record's default): the item tokens and
#: the token key, which a message built by hand (tests, tools) may go without.
_OPTIONAL_LAST = frozenset({DATA, RESULT, START})


def _body_check(
    fields: tuple[Any, ...], nested: Any, optional_last: bool
) -> Callable[[list[Any]], bool]:
    """A check of a decoded body (a list) against ``fields`` and the ``nested`` check,
    built once per kind: every message pays for its check, so it does no more than it must."""
    n = len(fields)
    # bool is an int to isinstance, but never a count, sequence or run number.
    exact = tuple(i for i, t in enumerate(fields) if t is int)
    loose = tuple((i, t) for i, t in enumerate(fields) if t is not int and t is not _ANY)
    shorter = n - 1 if optional_last else n
    loose_short = tuple((i, t) for i, t in loose if i < shorter)

    def check(body: list[Any]) -> bool:
        m = len(body)
        if m != n and m != shorter:
            return False
        for i in exact:
            if type(body[i]) is not int:
                return False
        for i, t in loose if m == n else loose_short:
            if not isinstance(body[i], t):
                return False
        return nested is None or nested(body)

    return check


_CHECKS: dict[int, Callable[[list[Any]], bool]] = {
    kind: _body_check(spec.fields, _NESTED.get(kind), kind in _OPTIONAL_LAST)
    for kind, spec in SPECS.items()
}


def decode(
    frames: list[bytes],
    accept: Collection[int] | None = None,
    where: str = "",
    max_bytes: int = 1 << 62,
) -> Any:
    """Parse ``[header, body, *frames]`` into its record (extra frames: DATA and RESULT
    only); raise ``ProtocolError`` if malformed, over the size limits (``max_bytes``,
    frames included, for kinds that carry user data, the kind's own for the others), or
    if ``accept`` is given and the kind is not one of them (``where`` says where it came:
    "from the distributor", "on the ACK socket"...)."""
    if not 2 <= len(frames) <= 2 + MAX_FRAMES:
        raise ProtocolError(f"expected 2 frames, got {len(frames)}", frames, "frame count")
    header, raw, extra = frames[0], frames[1], frames[2:]
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
    spec = SPECS.get(kind)
    if spec is None:
        raise ProtocolError(f"unknown message kind 0x{kind:02x}", frames, "unknown kind")
    name = KIND_NAMES[kind]
    if accept is not None and kind not in accept:
        raise ProtocolError(f"{name} is not expected {where}".rstrip(), frames, "wrong direction")
    limit = spec.max_bytes or max_bytes
    size = len(raw)
    if extra:  # big values as frames: DATA and RESULT only, all of them within the limit
        if kind not in FRAMED_KINDS:
            raise ProtocolError(f"{name} with {len(extra)} extra frame(s)", frames, "frame count")
        size += sum(memoryview(frame).nbytes for frame in extra)
    if size > limit:
        raise ProtocolError(f"{name} of {size} bytes, over {limit}", frames, "too large")
    bound = LIMITS.get(kind)
    if bound is not None and len(raw) > bound.max_elements:  # else it cannot hold too many
        try:
            check_elements(raw, bound)
        except TooManyElements as exc:
            raise ProtocolError(f"{name} body: {exc}", frames, "too many elements") from None
    try:
        body = msgpack.unpackb(
            raw,
            ext_hook=frames_hook(extra) if extra else ext_hook,
            max_array_len=spec.max_len,
            max_map_len=spec.max_len,
            max_ext_len=1024,
        )
    except Exception as exc:  # msgpack raises several types for garbage and for limits
        raise ProtocolError(f"undecodable {name} body: {exc}", frames, "undecodable body") from None
    if type(body) is not list or not _CHECKS[kind](body):
        raise ProtocolError(f"malformed {name} body", frames, "malformed body")
    return spec.record(*body)


def clip_error(text: str) -> str:
    """``text`` cut to :data:`ERROR_MAX_CHARS`, keeping its start and its last lines."""
    if len(text) <= ERROR_MAX_CHARS:
        return text
    half = ERROR_MAX_CHARS // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"
