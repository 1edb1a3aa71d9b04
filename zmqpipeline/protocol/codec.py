"""Building messages: :class:`Codec` (see :mod:`zmqpipeline.protocol` for the tables)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..errors import MessageTooLarge, SerializationError
from ..utils.serializer import Packer
from .bounds import ElementLimit, TooManyElements, check_elements
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
    LIMITS,
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

_COUNTED = ElementLimit(1 << 62, 1 << 62)  # counts an entry's elements, refuses nothing
_ENTRY_SCAN_BYTES = 4096  # a shorter entry counts as its length (each element: 1 byte or more)


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _refused_key(seq: int, task_type: str, result: Any, exc: Exception) -> SerializationError:
    what = f"the result of item {seq} of task type {task_type!r} holds"
    return SerializationError(f"{what} {wrong_key(result, ()) or exc}")


def _bin_header(n: int) -> bytes:
    if n < 1 << 8:
        return b"\xc4" + bytes((n,))
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def _result_message(head: bytes, packed: list[bytes], tokens: Iterable[bytes]) -> list[bytes]:
    """RESULT from its packed head, entries and tokens (msgpack arrays concatenate)."""
    blob = b"".join(tokens)
    body = b"".join([head, _array_header(len(packed)), *packed, _bin_header(len(blob)), blob])
    return [HEADERS[RESULT], body]


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
        bound = LIMITS.get(kind)
        if bound is not None and len(raw) > bound.max_elements:
            try:
                check_elements(raw, bound)
            except TooManyElements as exc:
                what = f" for task type {context!r}" if context else ""
                raise MessageTooLarge(
                    f"{KIND_NAMES[kind]} message{what} holds {exc} (protocol.bounds)"
                ) from None
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

    def data(
        self, run: int, items: list[list[Any]], task_type: str, tokens: bytes = b""
    ) -> list[bytes]:
        """``tokens``: the tokens covering the items (:mod:`~zmqpipeline.protocol.tokens`)."""
        return self.encode(DATA, [run, items, tokens], task_type)

    def data_framed(
        self,
        run: int,
        items: list[list[Any]],
        task_type: str,
        tokens: Callable[[list[int]], list[bytes]],
    ) -> list[list[Any]]:
        """DATA messages for items that may hold big values (see
        :mod:`~zmqpipeline.protocol.frames`): each item that has some travels alone, its
        values as frames after the body; the others together in one message, as
        :meth:`data` sends them (``tokens(seqs)``: the tokens covering ``seqs``). An item over
        ``max_message_bytes`` (body and frames) raises :class:`MessageTooLarge` naming its
        size and the limit."""
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
            message = self.encode(DATA, [run, [[seq, body]], b"".join(tokens([seq]))], task_type)
            self._check_framed(message, frames, f"item {seq} of task type {task_type!r}")
            messages.append(message + frames)
        if plain:
            blob = b"".join(tokens([seq for seq, _ in plain]))
            messages.append(self.data(run, plain, task_type, blob))
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
        self,
        run: int,
        task_type: str,
        seq: int,
        result: dict[str, Any] | None,
        worker_id: bytes,
        token: bytes | None = None,
    ) -> list[bytes]:
        """One item's result alone; raises what :meth:`results` reports as failed."""
        tokens = None if token is None else {seq: token}
        messages, failed = self.results(run, task_type, worker_id, [(seq, result)], tokens)
        if failed:
            raise failed[0][1]
        return messages[0]

    # A body no longer than the element limit cannot hold more elements (a byte each at
    # least): neither side counts them (protocol.bounds). So entries are cut into messages
    # of that length (``uncounted``); only a longer entry is counted, and it travels alone
    # (so no message can hold more elements than the limit).
    def results(
        self,
        run: int,
        task_type: str,
        worker_id: bytes,
        entries: list[tuple[int, Any]],
        tokens: dict[int, bytes] | None = None,
    ) -> tuple[list[list[Any]], list[tuple[int, Exception]]]:
        """RESULT messages for ``(seq, result)`` entries, as few as fit in ``max_bytes`` and
        the element limit (a result with big values alone, they as frames), each with the
        tokens of its entries (taken out of ``tokens``), and the entries that fail alone
        (:class:`SerializationError`, :class:`MessageTooLarge`). One warm loop per batch."""
        key = (run, task_type, worker_id)  # the same for all of a worker's batches in a run
        if self._head[0] != key:
            self._head = (key, b"\x95" + self._packer.pack([run, task_type, worker_id])[1:])
        head = self._head[1]
        room = self.max_bytes - len(head) - 10  # 10: the longest array and bin headers
        room_elements = LIMITS[RESULT].max_elements - 8  # 8: the head's
        uncounted = min(room, LIMITS[RESULT].max_elements - len(head) - 10)  # see above
        fast = self._packer.fast
        pop = (tokens or {}).pop
        messages: list[list[Any]] = []
        failed: list[tuple[int, Exception]] = []
        chunk: list[bytes] = []
        chunk_tokens: dict[bytes, None] = {}  # the tokens covering the chunk's entries
        size = 0
        for seq, result in entries:
            token = pop(seq, b"")  # none known: the collector refuses the message
            frames: list[Any] = []
            try:
                body = split_frames(result, frames) if result else result
            except SerializationError as exc:  # a key the receiver would refuse
                failed.append((seq, _refused_key(seq, task_type, result, exc)))
                continue
            if frames:  # big values: this result travels alone, they as frames
                self._framed_result(head, seq, body, token, task_type, frames, messages, failed)
                continue
            entry = [seq, result]
            try:
                packed: bytes = fast(entry)
            except Exception:
                packed = self._pack_alone(task_type, entry)
            if type(packed) is not bytes or len(packed) > uncounted:  # else: a byte an element
                counted = self._entry_elements(task_type, entry, packed, room, room_elements)
                if isinstance(counted, Exception):
                    failed.append((seq, counted))
                    continue
            grow = len(packed) + (0 if token in chunk_tokens else len(token))
            if chunk and size + grow > uncounted:
                messages.append(_result_message(head, chunk, chunk_tokens))
                chunk, chunk_tokens, size = [], {}, 0
            chunk.append(packed)
            if token not in chunk_tokens:
                chunk_tokens[token] = None
                size += len(token)
            size += len(packed)
        if chunk:
            messages.append(_result_message(head, chunk, chunk_tokens))
        return messages, failed

    def _framed_result(
        self,
        head: bytes,
        seq: int,
        body: Any,
        token: bytes,
        task_type: str,
        frames: list[Any],
        messages: list[list[Any]],
        failed: list[tuple[int, Exception]],
    ) -> None:
        """A result holding big values: one RESULT of its own, they as frames after it."""
        try:
            one = self._packer.pack([seq, body], task_type)
            message: list[Any] = _result_message(head, [one], [token])
            self._check_framed(message, frames, f"result of item {seq} of task type {task_type!r}")
        except (SerializationError, MessageTooLarge) as exc:
            failed.append((seq, exc))
        else:
            messages.append(message + frames)

    def _pack_alone(self, task_type: str, entry: list[Any]) -> Any:
        """A RESULT entry the fast path would not pack, packed again (what failed named)."""
        self._packer.reset()
        try:  # the result alone, for the error that names what in it failed
            self._packer.pack(entry[1], task_type)
            return self._packer.pack(entry, task_type)
        except Exception as exc:  # whatever it was, that item fails alone
            self._packer.reset()
            if isinstance(exc, SerializationError):
                return exc
            return SerializationError(
                f"cannot serialize the result of item {entry[0]} for task type "
                f"{task_type!r}: {type(exc).__name__}: {exc}"
            )

    def _entry_elements(
        self, task_type: str, entry: list[Any], packed: Any, room: int, elements: int
    ) -> int | Exception:
        """A packed RESULT entry's elements (an upper bound), or why it cannot go: it
        would not pack (``packed`` is the exception), or it is too big."""
        if isinstance(packed, Exception):
            return packed
        n = len(packed)  # an upper bound of its elements: each takes a byte at least
        if n > _ENTRY_SCAN_BYTES:
            n = check_elements(packed, _COUNTED)
        seq = entry[0]
        what = f"result of item {seq} of task type {task_type!r}"
        if len(packed) > room:
            return MessageTooLarge(
                f"{what} is {len(packed)} bytes, over the message limit of {self.max_bytes} "
                "(max_message_bytes)"
            )
        if n > elements:
            return MessageTooLarge(f"{what} holds {n} elements, over {elements} (protocol.bounds)")
        return n

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
        key: bytes = b"",
    ) -> list[bytes]:
        body = [run, metadata, task_types, forward or [], quiet or [], key]
        return self.encode(START, body)

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
