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
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import zmq

from .. import protocol
from ..errors import JournalError, ProtocolError
from ..protocol.frames import MAX_FRAMES
from ..runtime.runtime import DRAIN, Role, RoleRuntime, UserCodeError, call_user, user_code_error
from ..runtime.transport import StopSignal, recv_frames, send_frames
from ..runtime.waitlog import WaitLog
from ..settings import Settings
from ..types import EndpointAddress
from ..utils.messages import MESSAGE_TYPE_END, MESSAGE_TYPE_SUCCESS
from .logic import CollectorLogic

if TYPE_CHECKING:
    from ..journal.collector import CollectorJournal

__all__ = ["Collector"]

logger = logging.getLogger("zmqpipeline.collector")

#: Messages of results ZeroMQ queues for the collector per worker: a slow collector does
#: not hold megabytes of results it has not handled yet (a message of small results
#: holds up to RESULT_BATCH_ITEMS of them).
RESULTS_RCVHWM = 4


class Collector(Role):
    """Subclass, set ``endpoint`` (workers push results here) and ``ack_endpoint`` (the
    distributor connects here), and implement :meth:`handle_collection`."""

    #: Where workers push results (the collector binds it).
    endpoint: ClassVar[EndpointAddress]
    #: Where the distributor connects for START/SKIP/END and ACKs (the collector binds it).
    ack_endpoint: ClassVar[EndpointAddress]

    required = ("endpoint", "ack_endpoint")

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        journal: str | os.PathLike[str] | None = None,
        fresh: bool = False,
    ) -> None:
        super().__init__(settings=settings)
        #: The journal file (``None``: none; default: a class attribute ``journal``, else
        #: ``<settings.journal_dir>/collector.sqlite``): the ids handled, so that a
        #: restarted collector never handles one twice.
        self.journal = journal if journal is not None else getattr(type(self), "journal", None)
        if self.journal is None and self.settings.journal_dir:
            self.journal = os.path.join(self.settings.journal_dir, "collector.sqlite")
        #: Follow a new run even if the journal holds one that has not ended (else that
        #: is refused: the distributor's journal was lost or replaced?).
        self.fresh = fresh
        self.metadata: dict[str, Any] = {}
        self._item: tuple[str, int] | None = None
        self._from_cache = False
        self.items_collected = 0
        self.duplicates = 0
        self.forged_results = 0  # results refused: their items were not handed out to them
        self._finished_takes_msgtype = _takes_msgtype(self.handle_finished)

    @property
    def from_cache(self) -> bool:
        """``True`` while :meth:`handle_collection` handles a result the distributor served
        from the result cache (:class:`~zmqpipeline.Cache`) instead of a worker's."""
        return self._from_cache

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
        ``self.item_id`` names the item (``"TASK_TYPE/seq"``); ``self.from_cache`` is
        ``True`` for a result served from the task's :class:`~zmqpipeline.Cache` (the item
        was not run again; ``msgtype`` is the same). A returned dict rides on
        this item's ACK to the task's ``is_available_for_handling``. An exception is
        logged and the item is handed out again (up to ``MAX_ATTEMPTS``).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement handle_collection()")

    def handle_finished(self, data: dict[str, Any], task_type: str) -> None:
        """Called once when the run ends, *also when it was stopped or drained early*;
        ``data`` summarises it (``collected``, ``failed``, ``retries``, ``aborted``, and
        ``ended_by``: ``completed``, ``drained`` or ``stopped``). Look at it before
        replacing an earlier run's output (see the tutorial). The older form with a
        trailing ``msgtype`` works too."""

    _stop_signal: StopSignal | None = None  # while run() runs: stop() sets it

    def get_ack_data(self) -> dict[str, Any] | None:
        """A dict attached to every ACK (``None``: nothing)."""
        return None

    # -- the loop -------------------------------------------------------------------------

    def stop(self) -> None:
        """End :meth:`run` from another thread, as SIGTERM would (an in-process run whose
        distributor has gone, such as an executor's)."""
        if self._stop_signal is not None:
            self._stop_signal.set()

    def run(self) -> None:
        """Collect until the distributor ends the run (or SIGINT/SIGTERM), then return."""
        with RoleRuntime("collector", self.settings, logger) as rt:
            self._stop_signal = rt.stop
            # Results wait in ZeroMQ's queue for this socket a few messages a worker, then
            # in the worker's (a big result is a message: its bytes are bounded there, see
            # zmqpipeline.worker.unsent); the option must be set before the bind.
            rt.ctx.setsockopt(zmq.RCVHWM, RESULTS_RCVHWM)
            pull = rt.open(zmq.PULL, self.endpoint, bind=True)
            rt.ctx.setsockopt(zmq.RCVHWM, 1000)  # libzmq's default, for the other sockets
            router = rt.open(zmq.ROUTER, self.ack_endpoint, bind=True, admit="distributor")
            journal = None
            if self.journal is not None:
                from ..journal.collector import CollectorJournal  # it imports this module

                journal = CollectorJournal(self.journal, fresh=self.fresh)
                if _nothing_to_collect(journal):
                    return
            logic = CollectorLogic(self.settings, self._collect, rt.drops, journal)
            logic.collect_cached = self._collect_cached
            logic.on_start = self._start_run
            try:
                try:
                    self._loop(rt, logic, pull, router)
                except JournalError as exc:
                    if journal is None or journal.broken is None:
                        raise  # refused (another run, a damaged file): said in one line
                    logger.error(
                        "%s: the collector stops (the ids journaled so far are kept: "
                        "run it again once the journal can be written)",
                        exc,
                    )
                    logic.end = {"collected": {}, "failed": [], "retries": 0, "aborted": True}
                self.items_collected, self.duplicates = logic.collected, logic.duplicates
                self.forged_results = logic.forged
                self._finish(logic, router)
            finally:
                if journal is not None:
                    journal.close()
        logger.info("collector finished: %d item(s) collected", self.items_collected)

    def _start_run(self, metadata: dict[str, Any]) -> None:
        self.metadata = metadata

    def _collect_cached(
        self, task_type: str, seq: int, result: dict[str, Any]
    ) -> dict[str, Any] | None:
        self._from_cache = True
        try:
            return self._collect(task_type, seq, result)
        finally:
            self._from_cache = False

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
        wait_log = WaitLog(logger, time.monotonic())
        max_bytes = self.settings.max_message_bytes
        while logic.end is None:
            events = dict(poller.poll(100 if logic.outbox else 1000))
            now = time.monotonic()
            if rt.stop.fd in events:
                logger.warning("collector: stop requested")
                logic.end = {"collected": {}, "failed": [], "retries": 0, "aborted": True}
                break
            if router in events:
                # Its distributor's kinds are small, but for the results it serves from
                # its cache (RESULT, bounded as from workers).
                for sender, msg, _ in _read(rt, router, 3, max_bytes):
                    logic.on_distributor(sender, msg, now)
            if pull in events:
                journal, waiting = logic.journal, True
                if journal is None:
                    # A lone result's ACK leaves before we ask whether more came (a
                    # libzmq call on every round trip's path); what came meanwhile is
                    # read next and ACKed together. (With a journal, the ids are
                    # committed before their ACK: one commit for all.)
                    for _, msg, size in _read(rt, pull, 2, max_bytes, limit=1):
                        logic.on_result(msg, size)
                        if len(msg.items) == 1:
                            logic.flush()
                            _send_outbox(logic, router)
                    waiting = False
                for _, msg, size in _read(rt, pull, 2, max_bytes, waiting=waiting):
                    logic.on_result(msg, size)
                logic.flush()
                if journal is not None:
                    journal.commit()
            _send_outbox(logic, router)
            for tokens in logic.tokens:  # a lone result's next token, made while we wait
                tokens.prepare()
            if wait_log.due(now):
                key, what = _waiting_for(logic, self.ack_endpoint, now)
                wait_log.log(what, now, key)

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
                _send_outbox(logic, router)


def _read(
    rt: RoleRuntime,
    sock: zmq.Socket[Any],
    n_frames: int,
    max_bytes: int,
    limit: int = DRAIN,
    waiting: bool = True,
) -> Iterator[tuple[bytes, Any, int]]:
    """Decoded records waiting on ``sock`` (``waiting``: a poll has said one does; at
    most ``limit``), with their sender (ROUTER) or the first frame (PULL) and their size
    (body and big values' frames); bad ones are dropped and counted."""
    accept = protocol.COLLECTOR_RESULTS if n_frames == 2 else protocol.COLLECTOR_FROM_DISTRIBUTOR
    for i in range(limit):
        try:
            # A PULL's results may carry big values as frames after the body (not copied).
            most, body = (n_frames + MAX_FRAMES, 0) if n_frames == 2 else (n_frames, 1)
            frames = recv_frames(sock, most, waiting and not i, buffers_from=2)
            if frames is None:
                return
            msg = protocol.decode(frames[body:], accept, "at the collector", max_bytes)
        except ProtocolError as exc:
            rt.drops.drop(exc.category, exc.reason)
            continue
        yield frames[0], msg, sum(memoryview(f).nbytes for f in frames[body + 1 :])


def _send_outbox(logic: CollectorLogic, router: zmq.Socket[Any]) -> None:
    """Send what the distributor can take now; keep the rest while its queue is full.
    A message for a peer that is not connected is dropped: a distributor that comes back
    hands out again what it never heard of, and we ACK the duplicates."""
    outbox = logic.outbox
    while outbox:
        identity, frames = outbox[0]
        try:
            send_frames(router, frames, to=identity)
        except zmq.Again:
            return
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            logic.acks_lost = True
        outbox.popleft()


def _waiting_for(logic: CollectorLogic, ack_endpoint: str, now: float) -> tuple[str, str | None]:
    """What the collector waits for, if anything: ``(which wait, what to say)``."""
    if logic.distributor is None:
        return "none", f"collector: waiting for a distributor to connect to {ack_endpoint}"
    silent = now - logic.distributor_seen
    if silent > logic.settings.liveness_s:
        return "silent", (
            f"collector: the distributor at {ack_endpoint} has been silent for {silent:.0f} s; "
            "waiting for it"
        )
    return "", None


def _nothing_to_collect(journal: CollectorJournal) -> bool:
    """The run the journal follows is complete (see ``CollectorJournal.complete_run``):
    say so and close it; its distributor ends at once, so waiting would be for ever."""
    run = journal.complete_run()
    if run is None:
        return False
    logger.warning(
        "run %d in journal %s is already complete: nothing to collect, the collector ends "
        "(fresh=True, or --fresh, follows a new run)",
        run,
        journal.path,
    )
    journal.close()
    return True


def _takes_msgtype(method: Any) -> bool:
    """True for the 2014 form ``handle_finished(self, data, task_type, msgtype)``."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)
