"""Building messages: :class:`Codec` (see :mod:`zmqpipeline.protocol` for the tables)."""

from __future__ import annotations

from typing import Any

from ..errors import MessageTooLarge, SerializationError
from ..utils.serializer import Packer
from .frames import split_frames, wrong_key
from .wire import (
    ACK,
    ALIVE,
    BYE,
    CONTROL,
    CONTROL_REPLY,
    CREDIT,
    DATA,
    DISCONNECT,
    END,
    FAIL,
    FINISHED,
    HANDBACK,
    HEADERS,
    HEARTBEAT,
    HELLO,
    JOB,
    KIND_NAMES,
    META,
    META_OK,
    PING,
    PUSH,
    PUSH_CLOSE,
    PUSH_REPLY,
    READY,
    RECALL,
    REPLY,
    REQUEST,
    REQUEST_ERROR,
    RESET,
    RESULT,
    SKIP,
    SPECS,
    SREADY,
    START,
    WELCOME,
    WORKER_ERROR,
    WORKER_REPLY,
    clip_error,
)

__all__ = ["Codec", "ack_group"]


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _result_message(head: bytes, packed: list[bytes]) -> list[bytes]:
    """RESULT from its packed head and entries (msgpack arrays concatenate)."""
    return [HEADERS[RESULT], b"".join([head, _array_header(len(packed)), *packed])]


def ack_group(
    task_type: str,
    worker_id: bytes,
    seqs: list[int],
    ack_data: list[dict[str, Any] | None],
    errors: list[str | None],
    results: list[dict[str, Any] | None],
    firsts: list[bool],
) -> list[Any]:
    """One group of an ACK: the items of one task type one worker executed, a column per
    field, in the order they were collected. ``ack_data``: what ``handle_collection``
    returned; ``errors``: its error if it raised (the item is tried again); ``results``:
    the worker's result, for a task type that feeds a stage, on the item's first ACK;
    ``firsts``: the collector handled the item in this ACK (``False`` for a duplicate's
    re-ACK). A column whose values are all the default (``None``; ``True`` for
    ``firsts``) travels as ``None``: the common group is a task type, a worker and a list
    of plain ints."""
    n = len(seqs)
    return [
        task_type,
        worker_id,
        seqs,
        None if ack_data.count(None) == n else ack_data,
        None if errors.count(None) == n else errors,
        None if results.count(None) == n else results,
        None if firsts.count(True) == n else firsts,
    ]


class Codec:
    """Builds messages. Holds one reusable packer, so use one ``Codec`` per thread."""

    __slots__ = ("_head", "_packer", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self._packer = Packer()
        self.max_bytes = max_bytes
        self._head: tuple[Any, bytes] = (None, b"")  # RESULT's last head, and its key

    def encode(self, kind: int, body: list[Any], context: str = "") -> list[bytes]:
        raw = self._packer.pack(body, context)
        limit = SPECS[kind].max_bytes or self.max_bytes
        if len(raw) > limit:
            what = f" for task type {context!r}" if context else ""
            raise MessageTooLarge(
                f"{KIND_NAMES[kind]} message{what} is {len(raw)} bytes, over the "
                f"limit of {limit} (max_message_bytes)"
            )
        return [HEADERS[kind], raw]

    # Named builders keep the frame layout in this one module.
    def ready(self, task_type: str, capacity: int, free: int, threads: int = 1) -> list[bytes]:
        return self.encode(READY, [task_type, capacity, free, threads])

    def recall(self, n: int) -> list[bytes]:
        return self.encode(RECALL, [n])

    def hand_back(self, seqs: list[int]) -> list[bytes]:
        return self.encode(HANDBACK, [seqs])

    def welcome(
        self, run: int, metadata: dict[str, Any], options: dict[str, Any] | None = None
    ) -> list[bytes]:
        return self.encode(WELCOME, [run, metadata, options or {}])

    def data(self, run: int, items: list[list[Any]], task_type: str) -> list[bytes]:
        return self.encode(DATA, [run, items], task_type)

    def data_framed(self, run: int, items: list[list[Any]], task_type: str) -> list[list[Any]]:
        """DATA messages for items that may hold big values (see
        :mod:`~zmqpipeline.protocol.frames`): each item that has some travels alone, its
        values as frames after the body; the others together in one message, as
        :meth:`data` sends them. An item over ``max_message_bytes`` (body and frames) raises
        :class:`MessageTooLarge` naming its size and the limit."""
        messages: list[list[Any]] = []
        plain: list[list[Any]] = []
        for seq, payload in items:
            frames: list[Any] = []
            try:
                body = split_frames(payload, frames)
            except SerializationError as exc:  # a key the receiver would refuse
                found = wrong_key(payload, ()) or exc
                raise SerializationError(
                    f"item {seq} of task type {task_type!r} holds {found}"
                ) from None
            if not frames:
                plain.append([seq, payload])
                continue
            message = self.encode(DATA, [run, [[seq, body]]], task_type)
            self._check_framed(message, frames, f"item {seq} of task type {task_type!r}")
            messages.append(message + frames)
        if plain:
            messages.append(self.data(run, plain, task_type))
        return messages

    def _check_framed(self, message: list[bytes], frames: list[Any], what: str) -> None:
        size = len(message[1]) + sum(memoryview(f).nbytes for f in frames)
        if size > self.max_bytes:
            raise MessageTooLarge(
                f"{what} is {size} bytes, over the per-item limit of {self.max_bytes} "
                "(max_message_bytes)"
            )

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
        """One item's result alone; raises what :meth:`results` reports as failed."""
        messages, failed = self.results(run, task_type, worker_id, [(seq, result)])
        if failed:
            raise failed[0][1]
        return messages[0]

    def results(
        self, run: int, task_type: str, worker_id: bytes, entries: list[tuple[int, Any]]
    ) -> tuple[list[list[Any]], list[tuple[int, Exception]]]:
        """RESULT messages for ``(seq, result)`` entries, as few as fit in ``max_bytes``
        (a result holding big values alone, they as frames after the body),
        and the entries that fail alone: a result msgpack cannot carry
        (:class:`SerializationError`) or one too large for any message
        (:class:`MessageTooLarge`). Entries are packed here, at the batch's send, not as
        each item finishes: one warm loop costs less than a cold call per item."""
        key = (run, task_type, worker_id)  # the same for all of a worker's batches in a run
        if self._head[0] != key:
            self._head = (key, b"\x94" + self._packer.pack([run, task_type, worker_id])[1:])
        head = self._head[1]
        room = self.max_bytes - len(head) - 5  # 5: the longest array header
        fast = self._packer.fast
        messages: list[list[Any]] = []
        failed: list[tuple[int, Exception]] = []
        chunk: list[bytes] = []
        size = 0
        for seq, result in entries:
            frames: list[Any] = []
            try:
                body = split_frames(result, frames) if result else result
            except SerializationError as exc:  # a key the receiver would refuse
                what = f"the result of item {seq} of task type {task_type!r} holds"
                failed.append((seq, SerializationError(f"{what} {wrong_key(result, ()) or exc}")))
                continue
            if frames:  # big values: this result travels alone, they as frames
                try:
                    one = self._packer.pack([seq, body], task_type)
                    message: list[Any] = _result_message(head, [one])
                    self._check_framed(
                        message, frames, f"result of item {seq} of task type {task_type!r}"
                    )
                except (SerializationError, MessageTooLarge) as exc:
                    failed.append((seq, exc))
                else:
                    messages.append(message + frames)
                continue
            packed = self._pack_result(seq, result, task_type, fast, failed)
            if packed is None:
                continue
            if len(packed) > room:
                too_big = (
                    f"result of item {seq} of task type {task_type!r} is {len(packed)} "
                    f"bytes, over the message limit of {self.max_bytes} (max_message_bytes)"
                )
                failed.append((seq, MessageTooLarge(too_big)))
                continue
            if size + len(packed) > room:
                messages.append(_result_message(head, chunk))
                chunk, size = [], 0
            chunk.append(packed)
            size += len(packed)
        if chunk:
            messages.append(_result_message(head, chunk))
        return messages, failed

    def _pack_result(
        self,
        seq: int,
        result: Any,
        task_type: str,
        fast: Any,
        failed: list[tuple[int, Exception]],
    ) -> bytes | None:
        """``[seq, result]`` packed, or ``None`` with the reason in ``failed``."""
        try:
            packed: bytes = fast([seq, result])
            return packed
        except Exception:
            self._packer.reset()
        try:  # the result alone, for the error that names what in it failed
            self._packer.pack(result, task_type)
            packed = self._packer.pack([seq, result], task_type)
            return packed
        except Exception as exc:  # whatever it was, that item fails alone
            self._packer.reset()
            if not isinstance(exc, SerializationError):
                exc = SerializationError(
                    f"cannot serialize the result of item {seq} for task type "
                    f"{task_type!r}: {type(exc).__name__}: {exc}"
                )
            failed.append((seq, exc))
            return None

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

    def ack(self, run: int, groups: list[list[Any]]) -> list[bytes]:
        """``groups``: made by :func:`ack_group`."""
        return self.encode(ACK, [run, groups])

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
