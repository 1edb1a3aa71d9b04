"""``Collector``: receives every result exactly once and ACKs it back to the distributor.

The decisions live in :class:`CollectorLogic` (no sockets: dedupe, which distributor and
run to follow, results that came before their run's START, ACK batching); :class:`Collector`
owns the sockets: a PULL where workers push results, and a ROUTER at the ACK endpoint where
its one distributor's DEALER connects.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import zmq

from . import protocol
from .errors import ProtocolError
from .runtime import Role, RoleRuntime, UserCodeError, call_user, user_code_error
from .settings import Settings
from .state import SeenSet
from .transport import DropCounter, recv_frames, send_frames
from .types import EndpointAddress
from .utils.messages import MESSAGE_TYPE_END, MESSAGE_TYPE_SUCCESS

if TYPE_CHECKING:
    from .collector_journal import CollectorJournal

__all__ = ["Collector", "CollectorLogic", "SeenSet"]

logger = logging.getLogger("zmqpipeline.collector")

_TO_COLLECTOR = frozenset({protocol.RESULT})
_FROM_DISTRIBUTOR = frozenset({protocol.PING, protocol.START, protocol.SKIP, protocol.END})
_DRAIN = 1000
_BUFFER_LIMIT = 100_000  # results held while waiting for the distributor's START
_UNSENT_LIMIT = 10_000  # ACK messages held for an unreachable distributor
_WAIT_LOG_S = 5.0

#: ``collect(task_type, seq, result)`` returns the ACK's data or raises UserCodeError.
CollectFn = Callable[[str, int, dict[str, Any]], "dict[str, Any] | None"]


class CollectorLogic:
    """Everything the collector decides, fed decoded records and the time.

    It follows one distributor (identified by its routing id): the first to send START, or
    a new one once the current has been silent for ``liveness_s``; while it has one, no
    other gets an answer. START, SKIP and END count only from that distributor. ACKs,
    HELLOs and FINISHED go to :attr:`outbox` as ``(distributor id, frames)``.
    """

    def __init__(
        self,
        settings: Settings,
        collect: CollectFn,
        drops: DropCounter,
        journal: CollectorJournal | None = None,
    ) -> None:
        self.settings = settings
        self.journal = journal  # the ids handled, recorded before their ACK leaves
        self.collect = collect
        self.drops = drops
        self.codec = protocol.Codec(settings.max_message_bytes)
        self.collector_id = uuid.uuid4().bytes
        self.distributor: bytes | None = None
        self.distributor_seen = 0.0
        self.run: int | None = None
        self.metadata: dict[str, Any] = {}
        self.seen: dict[str, SeenSet] = {}
        # Streaming stages (START says which): results of ``forward`` task types ride on
        # their first ACK to the distributor; ``quiet`` ones skip handle_collection.
        self.forward: frozenset[str] = frozenset()
        self.quiet: frozenset[str] = frozenset()
        self.early: list[protocol.Result] = []
        self.groups: list[list[Any]] = []  # ACK groups not yet sent
        self.outbox: deque[tuple[bytes, list[bytes]]] = deque()
        self.end: dict[str, Any] | None = None
        self.collected = 0
        self.duplicates = 0

    # -- from workers -------------------------------------------------------------------

    def on_result(self, msg: protocol.Result) -> None:
        if self.run is None:
            if len(self.early) < _BUFFER_LIMIT:
                self.early.append(msg)
            else:
                self.drops.drop("result before the run started, buffer full")
        elif msg.run != self.run:
            self.drops.drop("result of another run")
        else:
            self._collect(msg)

    def _collect(self, msg: protocol.Result) -> None:
        task_type, worker_id = msg.task_type, msg.worker_id
        seen = self.seen.get(task_type)
        if seen is None:
            self.drops.drop("unknown task type", repr(task_type))
            return
        collect, journal = self.collect, self.journal
        forward, quiet = task_type in self.forward, task_type in self.quiet
        # One ACK group per RESULT: a column per field (see protocol.ack_group).
        seqs: list[int] = []
        acks: list[dict[str, Any] | None] = []
        errors: list[str | None] = []
        results: list[dict[str, Any] | None] = []
        firsts: list[bool] = []
        for seq, result in msg.items:
            ack_data = error = forwarded = None
            first = False  # handled in this ACK (not a duplicate, handle_collection ran)
            if seq in seen:
                # ACK it again: the first ACK may have been lost (a distributor restarted,
                # a link was cut); the distributor ignores ACKs of items it does not await.
                # Never with the result: a stage gets each result once.
                self.duplicates += 1
            else:
                try:
                    if not quiet:
                        ack_data = collect(task_type, seq, result or {})
                except UserCodeError as exc:
                    error = exc.text  # not seen: the item is tried again
                else:
                    seen.add(seq)
                    if journal is not None:
                        journal.handled(task_type, seq)
                    forwarded = (result or {}) if forward else None
                    first = True
            seqs.append(seq)
            acks.append(ack_data)
            errors.append(error)
            results.append(forwarded)
            firsts.append(first)
        self.collected += firsts.count(True)
        group = protocol.ack_group(task_type, worker_id, seqs, acks, errors, results, firsts)
        self.groups.append(group)

    def flush(self) -> None:
        """Turn the ACK groups gathered so far into one ACK message."""
        if self.groups and self.run is not None and self.distributor is not None:
            groups, self.groups = self.groups, []
            self._send(self.codec.ack(self.run, groups))

    # -- from the distributor ------------------------------------------------------------

    def on_distributor(self, sender: bytes, msg: Any, now: float) -> None:
        kind = type(msg)
        if sender != self.distributor:
            free = self.distributor is None or (
                now - self.distributor_seen >= self.settings.liveness_s
            )
            if not free or kind not in (protocol.Ping, protocol.Start):
                self.drops.drop("message from a peer that is not our distributor")
                return
            if kind is protocol.Ping:  # say we are up; it becomes ours by its START
                self._send(self.codec.hello(self.collector_id), sender)
                return
            if self.distributor is not None:
                logger.warning("the distributor went silent; following a new one")
            self.distributor = sender
            self.outbox.clear()  # ACKs for a distributor that has gone
        self.distributor_seen = now
        if kind is protocol.Ping:
            self._send(self.codec.hello(self.collector_id))
        elif kind is protocol.Start:
            if msg.run != self.run:
                self._start(msg)
        elif kind is protocol.Skip:
            if msg.run == self.run and msg.task_type in self.seen:
                self.seen[msg.task_type].add(msg.seq)
                if self.journal is not None:
                    self.journal.handled(msg.task_type, msg.seq)
        elif kind is protocol.End and msg.run == self.run:
            self.end = msg.summary

    def _start(self, msg: protocol.Start) -> None:
        if self.run is not None:
            logger.warning("a new run started before the end of the current one: following it")
            self.groups.clear()  # ACKs of the old run
        self.run = msg.run
        self.metadata = msg.metadata
        self.seen = {tt: SeenSet() for tt in msg.task_types}
        self.forward, self.quiet = frozenset(msg.forward), frozenset(msg.quiet)
        logger.info("run started: task types %s", ", ".join(self.seen))
        if self.journal is not None and self.journal.follow(msg.run, self.seen):
            logger.warning("resuming: ids handled before the restart will not be handled again")
        early, self.early = self.early, []
        for result in early:
            self.on_result(result)

    def _send(self, frames: list[bytes], to: bytes | None = None) -> None:
        to = to or self.distributor
        assert to is not None
        if len(self.outbox) >= _UNSENT_LIMIT:
            # The distributor re-issues what it never heard of; we re-ACK duplicates.
            self.outbox.popleft()
            self.drops.drop("ACK for an unreachable distributor, queue full")
        self.outbox.append((to, frames))

    def finished_message(self) -> None:
        if self.run is not None and self.distributor is not None:
            self._send(self.codec.finished(self.run))


class Collector(Role):
    """Subclass, set ``endpoint`` (workers push results here) and ``ack_endpoint`` (the
    distributor connects here), and implement :meth:`handle_collection`."""

    #: Where workers push results (the collector binds it).
    endpoint: ClassVar[EndpointAddress]
    #: Where the distributor connects for START/SKIP/END and ACKs (the collector binds it).
    ack_endpoint: ClassVar[EndpointAddress]

    required = ("endpoint", "ack_endpoint")

    def __init__(
        self, *, settings: Settings | None = None, journal: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__(settings=settings)
        #: The journal file (``None``: none; default: a class attribute ``journal``, else
        #: ``<settings.journal_dir>/collector.sqlite``): the ids handled, so that a
        #: restarted collector never handles one twice.
        self.journal = journal if journal is not None else getattr(type(self), "journal", None)
        if self.journal is None and self.settings.journal_dir:
            self.journal = os.path.join(self.settings.journal_dir, "collector.sqlite")
        self.metadata: dict[str, Any] = {}
        self._item: tuple[str, int] | None = None
        self.items_collected = 0
        self.duplicates = 0
        self._finished_takes_msgtype = _takes_msgtype(self.handle_finished)

    @property
    def item_id(self) -> str:
        """The id (``"TASK_TYPE/seq"``) of the item :meth:`handle_collection` is handling
        (``""`` before the first)."""
        return "" if self._item is None else f"{self._item[0]}/{self._item[1]}"

    # -- user hooks -------------------------------------------------------------------

    def handle_collection(
        self, data: dict[str, Any], task_type: str, msgtype: str
    ) -> dict[str, Any] | None:
        """Called once per item id with the worker's result.

        ``data`` is the dict the worker returned (``{}`` if it returned ``None``),
        ``task_type`` the item's task type and ``msgtype`` ``MESSAGE_TYPE_SUCCESS``;
        ``self.item_id`` names the item (``"TASK_TYPE/seq"``). A returned dict rides on
        this item's ACK to the task's ``is_available_for_handling``. An exception is
        logged and the item is handed out again (up to ``MAX_ATTEMPTS``).
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
        with RoleRuntime("collector", self.settings, logger) as rt:
            pull = rt.open(zmq.PULL, self.endpoint, bind=True)
            router = rt.open(zmq.ROUTER, self.ack_endpoint, bind=True, admit="distributor")
            journal = None
            if self.journal is not None:
                from .collector_journal import CollectorJournal  # it imports this module

                journal = CollectorJournal(self.journal)
            logic = CollectorLogic(self.settings, self._collect, rt.drops, journal)
            try:
                self._loop(rt, logic, pull, router)
                self.items_collected, self.duplicates = logic.collected, logic.duplicates
                self._finish(logic, router)
            finally:
                if journal is not None:
                    journal.close()
        logger.info("collector finished: %d item(s) collected", self.items_collected)

    def _collect(self, task_type: str, seq: int, result: dict[str, Any]) -> dict[str, Any] | None:
        # Every item's path: user code is called here directly (``user_code_error`` is
        # ``call_user``'s except branch).
        self._item = item = (task_type, seq)
        what = "handle_collection"
        try:
            returned = self.handle_collection(result, task_type, MESSAGE_TYPE_SUCCESS)
            what = "get_ack_data"
            ack_data = self.get_ack_data()
        except Exception as exc:
            raise user_code_error(logger, what, exc, item) from None
        if ack_data is not None and not isinstance(ack_data, dict):
            ack_data = None
            logger.error("get_ack_data() must return a dict or None; ignoring what it returned")
        if isinstance(returned, dict):
            return {**ack_data, **returned} if ack_data else returned
        return ack_data

    def _loop(
        self,
        rt: RoleRuntime,
        logic: CollectorLogic,
        pull: zmq.Socket[Any],
        router: zmq.Socket[Any],
    ) -> None:
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        poller.register(router, zmq.POLLIN)
        poller.register(rt.stop.fd, zmq.POLLIN)
        log_every = _WAIT_LOG_S
        next_log = time.monotonic() + log_every
        max_bytes = self.settings.max_message_bytes
        while logic.end is None:
            events = dict(poller.poll(100 if logic.outbox else 1000))
            now = time.monotonic()
            if rt.stop.fd in events:
                logger.warning("collector: stop requested")
                logic.end = {"collected": {}, "failed": [], "retries": 0, "aborted": True}
                break
            if router in events:
                for sender, msg in _read(rt, router, 3, protocol.CONTROL_MAX_BYTES):
                    logic.on_distributor(sender, msg, now)
            if pull in events:
                journal, waiting = logic.journal, True
                if journal is None:
                    # A lone result's ACK leaves before we ask whether more came (a
                    # libzmq call on every round trip's path); what came meanwhile is
                    # read next and ACKed together. (With a journal, the ids are
                    # committed before their ACK: one commit for all.)
                    for _, msg in _read(rt, pull, 2, max_bytes, limit=1):
                        logic.on_result(msg)
                        if len(msg.items) == 1:
                            logic.flush()
                            _send_outbox(logic.outbox, router)
                    waiting = False
                for _, msg in _read(rt, pull, 2, max_bytes, waiting=waiting):
                    logic.on_result(msg)
                logic.flush()
                if journal is not None:
                    journal.commit()
            self.metadata = logic.metadata
            _send_outbox(logic.outbox, router)
            if now >= next_log:
                log_every = _log_waiting(logic, self.ack_endpoint, now, log_every)
                next_log = now + log_every

    def _finish(self, logic: CollectorLogic, router: zmq.Socket[Any]) -> None:
        summary = logic.end or {}
        task_type = str(summary.get("task_type", ""))
        try:
            if self._finished_takes_msgtype:
                args: tuple[Any, ...] = (summary, task_type, MESSAGE_TYPE_END)
            else:
                args = (summary, task_type)
            call_user(logger, "handle_finished", self.handle_finished, *args)
        except UserCodeError:
            pass  # logged; the run is over all the same
        logic.flush()
        logic.finished_message()
        deadline = time.monotonic() + self.settings.linger_ms / 1000
        while logic.outbox and time.monotonic() < deadline:
            if router.poll(50, zmq.POLLOUT):
                _send_outbox(logic.outbox, router)


def _read(
    rt: RoleRuntime,
    sock: zmq.Socket[Any],
    n_frames: int,
    max_bytes: int,
    limit: int = _DRAIN,
    waiting: bool = True,
) -> Iterator[tuple[bytes, Any]]:
    """Decoded records waiting on ``sock`` (``waiting``: a poll has said one does; at
    most ``limit``), with their sender (ROUTER) or the first frame (PULL); bad ones are
    dropped and counted."""
    accept = _TO_COLLECTOR if n_frames == 2 else _FROM_DISTRIBUTOR
    for i in range(limit):
        try:
            frames = recv_frames(sock, n_frames, waiting=waiting and not i)
            if frames is None:
                return
            msg = protocol.decode(frames[-2:], accept, "at the collector", max_bytes)
        except ProtocolError as exc:
            rt.drops.drop(exc.category, exc.reason)
            continue
        yield frames[0], msg


def _send_outbox(outbox: deque[tuple[bytes, list[bytes]]], router: zmq.Socket[Any]) -> None:
    """Send what the distributor can take now; keep the rest while its queue is full.
    A message for a peer that is not connected is dropped: a distributor that comes back
    hands out again what it never heard of, and we ACK the duplicates."""
    while outbox:
        identity, frames = outbox[0]
        try:
            send_frames(router, frames, to=identity)
        except zmq.Again:
            return
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
        outbox.popleft()


def _log_waiting(logic: CollectorLogic, ack_endpoint: str, now: float, every: float) -> float:
    """Say what the collector waits for, at WARNING; return when to say it again (less
    and less often while the wait goes on)."""
    if logic.distributor is None:
        logger.warning("collector: waiting for a distributor to connect to %s", ack_endpoint)
    elif now - logic.distributor_seen > logic.settings.liveness_s:
        logger.warning(
            "collector: the distributor at %s has been silent for %.0f s; waiting for it",
            ack_endpoint,
            now - logic.distributor_seen,
        )
    else:
        return _WAIT_LOG_S
    return min(60.0, every * 2)


def _takes_msgtype(method: Any) -> bool:
    """True for the 2014 form ``handle_finished(self, data, task_type, msgtype)``."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)
