"""The worker's loop (:class:`Worker`); ``SingleThreadedWorker`` is in :mod:`.single`.

A worker connects a DEALER to its task's endpoint, announces how many items it can hold
(its credit: threads + prefetch), executes the items it is given, pushes each result to
the collector and gives the credit back. A separate heartbeat thread with its own socket
keeps the worker alive in the distributor's eyes while user code runs for a long time.
Its decisions live in :class:`~zmqpipeline.worker.logic.WorkerLogic`; no send here ever
blocks: what a peer cannot take yet waits in a queue, and a stop request always wins.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, ClassVar

import zmq

from .. import protocol
from ..errors import ProtocolError
from ..protocol.frames import MAX_FRAMES
from ..runtime.runtime import Role, RoleRuntime, UserCodeError, call_user
from ..runtime.transport import recv_frames, send_frames
from ..runtime.waitlog import WaitLog
from ..settings import Settings
from ..types import EndpointAddress, TaskType
from .lifetime import Lifetime
from .logic import BATCHES_UNSENT, CreditWindow, ResultBatch, WorkerLogic, worker_id
from .unsent import UnsentResults

__all__ = ["Worker"]

logger = logging.getLogger("zmqpipeline.worker")

#: While a worker has items queued, how often it still reads what the distributor sent.
_BUSY_READ_S = 0.05


class Worker(Role):
    """What single- and multi-threaded workers share: sockets, credit, the run loop."""

    #: The task type this worker executes.
    task_type: ClassVar[TaskType]
    #: The task's endpoint, where the distributor hands out its items.
    endpoint: ClassVar[EndpointAddress]
    #: The collector's endpoint, where results go.
    collector_endpoint: ClassVar[EndpointAddress]
    #: Items held beyond one per thread (``None``: the ``PREFETCH`` default).
    prefetch: ClassVar[int | None] = None
    #: When to leave (seconds; None: never): see :mod:`zmqpipeline.worker.lifetime`.
    lifetime_s: float | None = None
    lifetime_stagger_s: float = 0.0
    idle_timeout_s: float | None = None

    n_slots = 1

    required = ("task_type", "endpoint", "collector_endpoint")

    def __init__(self, *, settings: Settings | None = None) -> None:
        super().__init__(settings=settings)
        self.metadata: dict[str, Any] = {}
        self.items_processed = 0
        self.items_failed = 0
        self.worker_id = worker_id()

    # -- user hooks ---------------------------------------------------------------------

    def init_worker(self) -> None:
        """Runs once the distributor has accepted this worker; ``self.metadata`` is set."""

    def handle_execution(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        """Execute one item: ``data`` is the dict the task handed out.

        A single-threaded worker returns a dict for the collector, or ``None`` (a new
        dict per item: it is packed when its batch is sent, so changing it later changes
        what travels). A multi-threaded worker returns what its thread's
        ``handle_thread_execution`` gets.
        An exception is logged with its traceback and reported; the item is retried.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement handle_execution()")

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Work until the distributor ends the run (or SIGINT/SIGTERM), then return."""
        fixed = self.prefetch
        credit = CreditWindow(
            self.n_slots,
            self.settings.prefetch if fixed is None else fixed,
            self.settings.max_prefetch if fixed is None else fixed,
            self.settings.prefetch_window_s,
            self.settings.result_linger_s,  # credit covers two beats and the round trip
        )
        self._codec = protocol.Codec(self.settings.max_message_bytes)
        self._logic = WorkerLogic(self.task_type, self._codec, credit)
        self._results: deque[list[bytes]] = deque()  # for the collector, not yet taken
        # Credit is asked for once a batch and must cover two: a batch holds at most half
        # of what the worker may prefetch (a worker of many threads lingers less).
        self.batch = ResultBatch(
            min(self.settings.result_batch_items, max(1, credit.high // 2)),
            self.settings.result_linger_s,
            self.settings.max_in_flight_bytes // 2 // BATCHES_UNSENT,
        )
        # Big results are sent from this worker's memory: at most half the bytes in flight.
        self._unsent = UnsentResults(self.batch.max_bytes * BATCHES_UNSENT)
        with RoleRuntime(f"worker {self.task_type}", self.settings, logger) as rt:
            self._rt = rt
            self._dealer = rt.open(zmq.DEALER, self.endpoint, bind=False, identity=self.worker_id)
            self._push = rt.open(zmq.PUSH, self.collector_endpoint, bind=False)
            rt.start_heartbeat(self.endpoint, self.worker_id)
            try:
                self._start_extra()
                self._loop()
            finally:
                self._shutdown()
        logger.info(
            "worker %s finished: %d item(s) processed, %d failed",
            self.worker_id.decode(),
            self.items_processed,
            self.items_failed,
        )

    def _loop(self) -> None:
        logic, rt = self._logic, self._rt
        logic.ready()
        self._lifetime = life = Lifetime.of(self, time.perf_counter())
        poller = zmq.Poller()
        poller.register(self._dealer, zmq.POLLIN)
        poller.register(rt.stop.fd, zmq.POLLIN)
        self._register_extra(poller)
        liveness = self.settings.liveness_s
        self._last_heard = last_poll = time.perf_counter()
        self._wait_log = WaitLog(logger, last_poll)
        self._next_read = 0.0
        self._polled_in = False  # the last poll said the distributor sent something
        waits = 0
        # Between two items a worker makes as few ZeroMQ calls as it can: on a core that
        # has just woken from user code each system call costs tens of microseconds. With
        # items queued it sends the result and the credit and goes on; it reads from the
        # distributor every _BUSY_READ_S while busy, and when idle once the poll says
        # something came (the poll asks anyway: a read before it would ask twice).
        while not rt.stop.is_set and not life.over(time.perf_counter()):
            if logic.ended:
                return  # END came with a read made between items (see _hold)
            if logic.to_distributor or self._results:
                self._send_pending()
            busy = self._work_available()
            if busy and time.perf_counter() < self._next_read:
                self._work_one()
                continue
            if busy or self._polled_in:
                self._next_read = time.perf_counter() + _BUSY_READ_S
                self._read_distributor(waiting=self._polled_in)
                if logic.ended:
                    return
                if self._work_available():
                    continue
            # Idle: ask for what we may hold (credit was not asked for while a collector
            # that took nothing kept our results; now that they are gone, it is).
            self._ask_for_more()
            self._send_pending()
            poller.register(self._push, zmq.POLLOUT if self._results else 0)
            events = dict(poller.poll(self._poll_ms(last_poll, liveness)))
            now = time.perf_counter()
            self._polled_in = self._dealer in events
            self._on_events(events)
            if self.batch.items:
                self._flush_results(now)
            if now - last_poll > 2 * liveness:
                self._last_heard = now  # we were stalled, not the distributor silent
            last_poll = now
            if not events and now - self._last_heard >= liveness:
                waits += 1
                self._distributor_silent(waits, now)
                self._last_heard = now
            elif events and waits:
                waits = 0
                self._wait_log.clear(now)
        self._stop_early()

    def _poll_ms(self, last_poll: float, liveness: float) -> int:
        """How long the idle loop may wait: until a held result is due, the distributor
        has been silent a liveness period, or the lifetime is over."""
        pending = bool(self._logic.to_distributor or self._results)
        timeout = 100 if pending else int((self._last_heard + liveness - last_poll) * 1000)
        held = self.batch.wait_s(time.perf_counter())
        if held is not None:
            timeout = min(timeout, int(held * 1000) + 1)
        if self._unsent.pending and (self._logic.queue or self._unsent.full()):
            # Items, or the credit asked for more, wait for big results to leave: no event
            # says when they have (waiting for the distributor to speak stalled a run).
            timeout = 1
        return self._lifetime.poll_ms(time.perf_counter(), max(1, timeout))

    def _distributor_silent(self, waits: int, now: float) -> None:
        """Nothing from the distributor for a liveness period: announce ourselves again,
        and say so at WARNING after a few seconds, then less and less often."""
        logger.info("worker %s: distributor silent, announcing again", self.worker_id.decode())
        self._logic.ready()
        elapsed = waits * self.settings.liveness_s
        self._lifetime.heard_nothing_for(elapsed, self.worker_id)
        why = "not running, unreachable, or refusing this worker's CURVE key?"
        if self._rt.drops.counts["wrong version"]:
            why = "it answers in another protocol version: another zmqpipeline release"
        if self._wait_log.due(now):
            self._wait_log.log(
                f"worker {self.worker_id.decode()}: no answer from the distributor at "
                f"{self.endpoint} for {elapsed:.0f} s ({why})",
                now,
                key="silent",
            )

    def _send_pending(self) -> None:
        """Send what waits for the distributor and the collector, as far as they take it."""
        for sock, pending in (
            (self._dealer, self._logic.to_distributor),
            (self._push, self._results),
        ):
            while pending:
                try:
                    send_frames(sock, pending[0])
                except zmq.Again:
                    break
                pending.popleft()

    def _read_distributor(self, waiting: bool = False) -> None:
        """Read and apply all the distributor has sent (``waiting``: a poll said
        something has come)."""
        logic = self._logic
        while True:
            first, waiting = waiting, False
            try:
                frames = recv_frames(self._dealer, 2 + MAX_FRAMES, first, buffers_from=2)
                if frames is None:
                    self._polled_in = False
                    return
                self._last_heard = time.perf_counter()
                msg = protocol.decode(
                    frames, protocol.WORKER_FROM_DISTRIBUTOR, "from the distributor"
                )
            except ProtocolError as exc:
                self._rt.drops.drop(exc.category, exc.reason)
                if exc.category == "wrong version" and self._wait_log.due(self._last_heard):
                    self._wait_log.log(
                        f"worker {self.worker_id.decode()}: the distributor at {self.endpoint} "
                        f"speaks protocol version {exc.frames[0][0]}, this worker "
                        f"{protocol.VERSION}: run one zmqpipeline release on every machine",
                        self._last_heard,
                        key="version",
                    )
                continue
            if logic.on_message(msg):
                self.metadata = logic.metadata
                linger = logic.options.get("result_linger_s")
                if isinstance(linger, (int, float)) and not isinstance(linger, bool):
                    self.batch.max_linger_s = min(self.settings.result_linger_s, linger)
                self._welcomed()
            if logic.ended:
                return
            if logic.recalled:
                logic.answer_recall(self._take_back(logic.recalled))
            self._items_arrived()
            if type(msg) is protocol.Data and len(msg.items) == 1:
                # A lone item: run it before asking whether more came (a libzmq call on
                # its round trip's path). What did is read before its result goes (the
                # read in _hold), or by the next poll.
                self._polled_in = False
                return

    def _welcomed(self) -> None:
        if getattr(self, "_initialized", False):
            return
        self._initialized = True
        try:
            call_user(logger, "init_worker", self.init_worker)
        except UserCodeError:
            pass  # logged; its items will fail and be retried elsewhere if it matters
        self._initialize_threads()

    def check_result(self, result: Any) -> None:
        """A TypeError unless ``result`` is a dict or None (that item fails alone)."""
        if result is not None and not isinstance(result, dict):
            raise TypeError(
                f"{type(self).__name__} must return a dict or None for the collector, "
                f"not {type(result).__name__}"
            )

    def _hold(self, seq: int, result: Any, now: float) -> None:
        """Hold a result; send the held ones when due, with the credit they free. While
        results are held, credit is asked for only in that beat: one message to each
        peer per batch, not one per item."""
        logic, batch = self._logic, self.batch
        if batch.items and batch.run != logic.run:
            self._flush_results(now, force=True)  # a new run: the held ones are the old's
        due = batch.add(seq, result, now, logic.run, logic.credit.item_s)  # type: ignore[arg-type]
        if due:
            # One beat: send the results, ask for the credit they freed (it covers two
            # beats, so the queue never runs dry), take what an earlier beat's brought
            # (if none is awaited, the read waits: a stage's source beats every few items
            # and asks for credit in one beat of three).
            awaited = logic.credit.outstanding
            self._flush_results(now, force=True)
            if awaited:
                self._next_read = now + _BUSY_READ_S
                self._read_distributor()
        elif not logic.queue and logic.busy < logic.credit.slots:
            # Nothing queued, unless it came meanwhile (a stage's source feeds its workers
            # a few items at a time); else the results go at once (a lone item's round
            # trip is not delayed), with credit only if much is missing.
            self._next_read = now + _BUSY_READ_S
            self._read_distributor()
            if not logic.queue:
                self._flush_results(now, force=True, eager=False)

    def _flush_results(self, now: float, force: bool = False, eager: bool = True) -> None:
        logic, batch = self._logic, self.batch
        # A slot with nothing to do: hold nothing back (a lone item's round trip is not
        # delayed, and held results never keep the credit a waiting thread needs).
        idle = force or (logic.busy < logic.credit.slots and not logic.queue)
        if not batch.due(now, idle):
            return
        assert batch.run is not None
        entries = batch.take()
        messages, failed = self._codec.results(
            batch.run, self.task_type, self.worker_id, entries, logic.tokens
        )
        self.items_processed += len(entries) - len(failed)
        for seq, exc in failed:  # a result that cannot travel: that item fails alone
            self.items_failed += 1
            logic.fail(seq, f"{type(exc).__name__}: {exc}", [type(exc).__name__])
        self._unsent.track(messages)  # big values: counted until written out
        for frames in messages:
            if self._results:
                self._results.append(frames)
                continue
            try:
                send_frames(self._push, frames)
            except zmq.Again:
                self._results.append(frames)
        self._ask_for_more(eager)
        self._send_pending()

    def _ask_for_more(self, eager: bool = False) -> None:
        # A collector that takes nothing (or big results not yet out) gets no more work.
        if not self._results and not self._unsent.full():
            self._logic.ask_for_more(eager)

    # -- what the two kinds of worker do differently ------------------------------------

    def _work_available(self) -> bool:
        return False

    def _take_back(self, n: int) -> list[int]:
        """Up to ``n`` items handed to threads but not started (none here)."""
        return []

    def _work_one(self) -> None:
        pass

    def _items_arrived(self) -> None:
        pass

    def _start_extra(self) -> None:
        pass

    def _register_extra(self, poller: zmq.Poller) -> None:
        pass

    def _on_events(self, events: dict[Any, int]) -> None:
        pass

    def _initialize_threads(self) -> None:
        pass

    def _stop_early(self) -> None:
        logger.info("worker %s: stop requested", self.worker_id.decode())
        self._leave([])

    def _leave(self, handed_back: list[int]) -> None:
        """Hand back what was not started (BYE) and try once more to deliver results;
        neither waits: a peer that cannot take them loses nothing (un-ACKed items are
        handed out again)."""
        if self.batch:
            self._flush_results(time.perf_counter(), force=True)
        self._send_pending()
        try:
            send_frames(self._dealer, self._logic.hand_back(handed_back))
        except zmq.Again:
            pass  # not connected: it will find out from our silence

    def _shutdown(self) -> None:
        pass
