"""``Collector``: receives every result exactly once and ACKs it back to the distributor."""

from __future__ import annotations

import inspect
import logging
import time
import traceback
import uuid
from collections import deque
from typing import Any, ClassVar

import zmq

from . import protocol
from .errors import ProtocolError
from .security import Security
from .settings import Settings
from .task import check_class_attributes
from .transport import DropCounter, StopSignal, close_sockets, new_context, open_socket
from .types import EndpointAddress
from .utils.messages import MESSAGE_TYPE_END, MESSAGE_TYPE_SUCCESS

__all__ = ["Collector", "SeenSet"]

logger = logging.getLogger("zmqpipeline.collector")

_TO_COLLECTOR = frozenset({protocol.RESULT, protocol.START, protocol.SKIP, protocol.END})
_DRAIN = 1000
_BUFFER_LIMIT = 100_000  # results held while waiting for the distributor's START


class SeenSet:
    """The sequence numbers of one task type seen so far, in memory proportional to the
    ones seen out of order: every seq below :attr:`low` is seen, plus those in :attr:`above`."""

    __slots__ = ("above", "low")

    def __init__(self) -> None:
        self.low = 0
        self.above: set[int] = set()

    def __contains__(self, seq: int) -> bool:
        return seq < self.low or seq in self.above

    def add(self, seq: int) -> None:
        if seq == self.low:
            self.low += 1
            above = self.above
            while self.low in above:
                above.discard(self.low)
                self.low += 1
        elif seq > self.low:
            self.above.add(seq)


class Collector:
    """Subclass, set ``endpoint`` (workers push results here) and ``ack_endpoint`` (the
    distributor reads ACKs here), and implement :meth:`handle_collection`."""

    #: Where workers push results (the collector binds it).
    endpoint: ClassVar[EndpointAddress]
    #: Where the distributor reads ACKs (the collector binds it).
    ack_endpoint: ClassVar[EndpointAddress]
    #: CURVE keys for this role's tcp sockets (``None``: the ``ZMQPIPELINE_CURVE_*``
    #: environment variables, or no security). See docs/security.md.
    security: ClassVar[Security | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_class_attributes(cls, cls.__name__)

    def __init__(self, *, settings: Settings | None = None) -> None:
        for name in ("endpoint", "ack_endpoint"):
            if getattr(self, name, None) is None:
                raise TypeError(f"{type(self).__name__} has no {name}")
        self.settings = settings or Settings.from_env(security=self.security)
        self.metadata: dict[str, Any] = {}
        self.items_collected = 0
        self.duplicates = 0
        self.drops = DropCounter(logger, "collector")
        self._finished_takes_msgtype = _takes_msgtype(self.handle_finished)

    # -- user hooks -------------------------------------------------------------------

    def handle_collection(
        self, data: dict[str, Any], task_type: str, msgtype: str
    ) -> dict[str, Any] | None:
        """Called once per item id with the worker's result.

        ``data`` is the dict the worker returned (``{}`` if it returned ``None``),
        ``task_type`` the item's task type and ``msgtype`` ``MESSAGE_TYPE_SUCCESS``. A
        returned dict rides on this item's ACK to the task's ``is_available_for_handling``.
        An exception is logged and the item is handed out again (up to ``MAX_ATTEMPTS``).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement handle_collection()")

    def handle_finished(self, data: dict[str, Any], task_type: str) -> None:
        """Called once when the run ends; ``data`` summarises it (``collected``, ``failed``,
        ``retries``, ``aborted``). The older form with a trailing ``msgtype`` works too."""

    def get_ack_data(self) -> dict[str, Any] | None:
        """A dict attached to every ACK (``None``: nothing)."""
        return None

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Collect until the distributor ends the run (or SIGINT/SIGTERM), then return."""
        ctx = new_context()
        stop = StopSignal()
        sockets: list[zmq.Socket[Any]] = []
        try:
            pull = open_socket(
                ctx, zmq.PULL, self.endpoint, bind=True, settings=self.settings, role="collector"
            )
            sockets.append(pull)
            acks = open_socket(
                ctx,
                zmq.PUSH,
                self.ack_endpoint,
                bind=True,
                settings=self.settings,
                role="collector",
            )
            sockets.append(acks)
            self._loop(pull, acks, stop)
        finally:
            close_sockets(sockets)
            ctx.term()
            stop.close()
            self.drops.report()
        logger.info("collector finished: %d item(s) collected", self.items_collected)

    def _loop(self, pull: zmq.Socket[Any], acks: zmq.Socket[Any], stop: StopSignal) -> None:
        codec = protocol.Codec(self.settings.max_message_bytes)
        self._codec = codec
        self._run: int | None = None
        self._seen: dict[str, SeenSet] = {}
        self._early: list[list[Any]] = []  # RESULTs that came before START
        self._unsent: deque[list[bytes]] = deque()
        self._end: dict[str, Any] | None = None
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        poller.register(stop.fd, zmq.POLLIN)
        # Announce ourselves, now and to each new run's distributor: no distributor hands
        # out work before a collector is up, and one whose collector was replaced answers
        # HELLO with START.
        hello = codec.hello(uuid.uuid4().bytes)
        self._send(acks, hello, poller)
        self._hello_due = False
        while self._end is None:
            events = dict(poller.poll())
            if stop.fd in events:
                logger.warning("collector: stop requested")
                self._end = {
                    "collected": {},
                    "failed": [],
                    "retries": 0,
                    "aborted": True,
                    "task_type": "",
                }
                break
            if pull in events:
                entries = self._read(pull)
                if entries:
                    assert self._run is not None
                    self._send(acks, codec.ack(self._run, entries), poller)
                if self._hello_due:
                    self._hello_due = False
                    self._send(acks, hello, poller)
            if acks in events:
                self._send(acks, None, poller)
        self._finish(acks)

    def _read(self, pull: zmq.Socket[Any]) -> list[list[Any]]:
        entries: list[list[Any]] = []
        for _ in range(_DRAIN):
            try:
                frames = pull.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                kind, body = protocol.decode(frames, _TO_COLLECTOR, "at the collector")
            except ProtocolError as exc:
                self.drops.drop(exc.category, exc.reason)
                continue
            if kind == protocol.RESULT:
                if self._run is None:
                    if len(self._early) < _BUFFER_LIMIT:
                        self._early.append(body)
                    else:
                        self.drops.drop("result before the run started, buffer full")
                elif body[0] != self._run:
                    self.drops.drop("result of another run")
                else:
                    self._collect(body[1], body[2], body[3], entries)
            elif kind == protocol.START:
                if body[0] != self._run:
                    if self._run is not None:
                        logger.warning(
                            "a new run started before the end of the current one "
                            "(distributor restarted?): following the new run"
                        )
                        if entries:  # ACKs of the old run, for a distributor now gone
                            entries.clear()
                    self._start(body[0], body[1], body[2], entries)
                    self._hello_due = True
            elif kind == protocol.SKIP and body[0] == self._run:
                seen = self._seen.get(body[1])
                if seen is not None:
                    seen.add(body[2])
            elif kind == protocol.END and body[0] == self._run:
                self._end = body[1]
                break
            else:
                self.drops.drop(f"{protocol.KIND_NAMES[kind]} of another run")
        return entries

    def _start(
        self, run: int, metadata: dict[str, Any], task_types: list[Any], entries: list[list[Any]]
    ) -> None:
        self._run = run
        self.metadata = metadata
        self._seen = {str(tt): SeenSet() for tt in task_types}
        logger.info("run started: task types %s", ", ".join(self._seen))
        early, self._early = self._early, []
        for body in early:
            if body[0] == run:
                self._collect(body[1], body[2], body[3], entries)
            else:
                self.drops.drop("result of another run")

    def _collect(
        self, task_type: str, seq: int, result: dict[str, Any] | None, entries: list[list[Any]]
    ) -> None:
        seen = self._seen.get(task_type)
        if seen is None:
            self.drops.drop("unknown task type", repr(task_type))
            return
        if seq in seen:
            # ACK it again: the first ACK may have been lost with a distributor restart,
            # and the distributor ignores ACKs of items it no longer waits for.
            self.duplicates += 1
            entries.append([task_type, seq, None, None])
            return
        try:
            returned = self.handle_collection(
                result if result is not None else {}, task_type, MESSAGE_TYPE_SUCCESS
            )
            ack_data = self.get_ack_data()
            if isinstance(returned, dict):
                ack_data = {**ack_data, **returned} if isinstance(ack_data, dict) else returned
            elif ack_data is not None and not isinstance(ack_data, dict):
                raise TypeError(
                    f"get_ack_data() must return a dict or None, not {type(ack_data).__name__}"
                )
        except Exception:
            error = traceback.format_exc()
            logger.error("item %s/%d raised in handle_collection:\n%s", task_type, seq, error)
            entries.append([task_type, seq, None, error])
            return
        seen.add(seq)
        self.items_collected += 1
        entries.append([task_type, seq, ack_data, None])

    def _send(self, acks: zmq.Socket[Any], frames: list[bytes] | None, poller: zmq.Poller) -> None:
        """Send ``frames`` after anything still unsent; keep what the socket won't take yet
        (no distributor connected) and ask the poller to say when it will."""
        if frames is not None:
            self._unsent.append(frames)
        while self._unsent:
            try:
                acks.send_multipart(self._unsent[0], zmq.NOBLOCK)
            except zmq.Again:
                poller.register(acks, zmq.POLLOUT)
                return
            self._unsent.popleft()
        poller.register(acks, 0)  # nothing waits: stop watching (a no-op if not watched)

    def _finish(self, acks: zmq.Socket[Any]) -> None:
        summary = self._end or {}
        task_type = str(summary.get("task_type", ""))
        try:
            if self._finished_takes_msgtype:
                self.handle_finished(summary, task_type, MESSAGE_TYPE_END)  # type: ignore[call-arg]
            else:
                self.handle_finished(summary, task_type)
        except Exception:
            logger.error("handle_finished raised:\n%s", traceback.format_exc())
        if self._run is None:
            return
        self._unsent.append(self._codec.finished(self._run))
        deadline = time.monotonic() + self.settings.linger_ms / 1000
        while self._unsent and time.monotonic() < deadline:
            if acks.poll(50, zmq.POLLOUT):
                acks.send_multipart(self._unsent.popleft(), zmq.NOBLOCK)


def _takes_msgtype(method: Any) -> bool:
    """True for the 2014 form ``handle_finished(self, data, task_type, msgtype)``."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)
