"""Workers: ``SingleThreadedWorker`` and ``MultiThreadedWorker``.

A worker connects a DEALER to its task's endpoint, announces how many items it can hold
(its credit: threads + prefetch), executes the items it is given, pushes each result to
the collector and gives the credit back. A separate heartbeat thread with its own socket
keeps the worker alive in the distributor's eyes while user code runs for a long time.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import traceback
import uuid
from collections import deque
from typing import Any, ClassVar

import zmq

from . import protocol
from .errors import ProtocolError
from .metadata import MetaDataWorker
from .security import Security
from .settings import Settings
from .task import check_class_attributes
from .transport import DropCounter, StopSignal, close_sockets, heartbeat, new_context, open_socket
from .types import EndpointAddress, TaskType

__all__ = [
    "CreditWindow",
    "MetaDataWorker",
    "MultiThreadedWorker",
    "SingleThreadedWorker",
    "Worker",
]

logger = logging.getLogger("zmqpipeline.worker")

#: While a worker has items queued, how often it still reads what the distributor sent.
_BUSY_READ_S = 0.05

_FROM_DISTRIBUTOR = frozenset(
    {protocol.WELCOME, protocol.DATA, protocol.HEARTBEAT, protocol.RESET, protocol.END}
)


def _worker_id() -> bytes:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}".encode()


class CreditWindow:
    """How many items a worker asks the distributor for.

    Enough to keep its ``slots`` (threads) busy for ``window_s`` at the measured time per
    item, between ``low`` and ``high`` beyond one per slot. Credit is asked for in chunks
    of a quarter of the prefetch, so fast items do not cost a CREDIT message each.
    """

    __slots__ = ("high", "item_s", "low", "outstanding", "slots", "window_s")

    def __init__(self, slots: int, low: int, high: int, window_s: float) -> None:
        self.slots = slots
        self.low = max(0, low)
        self.high = max(self.low, high)
        self.window_s = window_s
        self.item_s: float | None = None  # moving average of one item's execution time
        self.outstanding = 0  # credit the distributor holds for us, not yet used

    @property
    def capacity(self) -> int:
        return self.slots + self.high

    def prefetch(self) -> int:
        if self.item_s is None:
            return self.low
        wanted = int(self.window_s * self.slots / max(self.item_s, 1e-6))
        return min(self.high, max(self.low, wanted))

    def observe(self, seconds: float) -> None:
        self.item_s = seconds if self.item_s is None else 0.8 * self.item_s + 0.2 * seconds

    def announce(self, held: int) -> int:
        """Credit to offer in READY; resets what the distributor is taken to hold."""
        self.outstanding = max(0, self.slots + self.prefetch() - held)
        return self.outstanding

    def received(self, n: int) -> None:
        self.outstanding = max(0, self.outstanding - n)

    def request(self, held: int) -> int:
        """Credit to ask for now (0: not worth a message yet); counted as outstanding."""
        prefetch = self.prefetch()
        want = self.slots + prefetch - held - self.outstanding
        if want < max(1, prefetch // 4):
            return 0
        self.outstanding += want
        return want


class Worker:
    """What single- and multi-threaded workers share: sockets, credit, the run loop."""

    #: The task type this worker executes.
    task_type: ClassVar[TaskType]
    #: The task's endpoint, where the distributor hands out its items.
    endpoint: ClassVar[EndpointAddress]
    #: The collector's endpoint, where results go.
    collector_endpoint: ClassVar[EndpointAddress]
    #: CURVE keys for this role's tcp sockets (``None``: the ``ZMQPIPELINE_CURVE_*``
    #: environment variables, or no security). See docs/security.md.
    security: ClassVar[Security | None] = None
    #: Items held beyond one per thread (``None``: the ``PREFETCH`` default).
    prefetch: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_class_attributes(cls, cls.__name__)

    def __init__(self, *, settings: Settings | None = None) -> None:
        for name in ("task_type", "endpoint", "collector_endpoint"):
            if getattr(self, name, None) is None:
                raise TypeError(f"{type(self).__name__} has no {name}")
        self.settings = settings or Settings.from_env(security=self.security)
        self.metadata: dict[str, Any] = {}
        self.items_processed = 0
        self.items_failed = 0
        self.worker_id = _worker_id()
        self.drops = DropCounter(logger, f"worker {self.task_type}")

    # -- user hooks ---------------------------------------------------------------------

    def init_worker(self) -> None:
        """Runs once the distributor has accepted this worker; ``self.metadata`` is set."""

    def handle_execution(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        """Execute one item: ``data`` is the dict the task handed out.

        A single-threaded worker returns a dict for the collector, or ``None``. A
        multi-threaded worker returns what its thread's ``handle_thread_execution`` gets.
        An exception is logged with its traceback and reported; the item is retried.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement handle_execution()")

    # -- the loop -------------------------------------------------------------------------

    n_slots = 1

    def run(self) -> None:
        """Work until the distributor ends the run (or SIGINT/SIGTERM), then return."""
        ctx = new_context()
        stop = StopSignal()
        stopped = threading.Event()
        beat: threading.Thread | None = None
        sockets: list[zmq.Socket[Any]] = []
        self._codec = protocol.Codec(self.settings.max_message_bytes)
        fixed = self.prefetch
        self._credit = CreditWindow(
            self.n_slots,
            self.settings.prefetch if fixed is None else fixed,
            self.settings.max_prefetch if fixed is None else fixed,
            self.settings.prefetch_window_s,
        )
        try:
            dealer = open_socket(
                ctx,
                zmq.DEALER,
                self.endpoint,
                bind=False,
                settings=self.settings,
                identity=self.worker_id,
                role="worker",
            )
            sockets.append(dealer)
            push = open_socket(
                ctx,
                zmq.PUSH,
                self.collector_endpoint,
                bind=False,
                settings=self.settings,
                role="worker",
            )
            sockets.append(push)
            beat = threading.Thread(
                target=heartbeat,
                name="zmqpipeline-heartbeat",
                daemon=True,
                args=(ctx, self.endpoint, self.worker_id, self.settings, stopped),
            )
            beat.start()
            self._dealer, self._push = dealer, push
            self._loop(ctx, stop)
        finally:
            stopped.set()
            if beat is not None:
                beat.join()
            self._shutdown()
            close_sockets(sockets)
            ctx.term()
            stop.close()
            self.drops.report()
        logger.info(
            "worker %s finished: %d item(s) processed, %d failed",
            self.worker_id.decode(),
            self.items_processed,
            self.items_failed,
        )

    def _loop(self, ctx: zmq.Context[Any], stop: StopSignal) -> None:
        self._run_id: int | None = None
        self._accepted = False
        self._initialized = False
        self._ctx = ctx
        self._send_ready()
        poller = zmq.Poller()
        poller.register(self._dealer, zmq.POLLIN)
        poller.register(stop.fd, zmq.POLLIN)
        self._register_extra(poller)
        self._last_heard = time.monotonic()
        liveness = self.settings.liveness_s
        next_read = 0.0
        # Between two items a worker makes as few ZeroMQ calls as it can: on a core that
        # has just woken from user code each system call costs tens of microseconds. With
        # items queued it sends the result and the credit and goes on; it reads from the
        # distributor when its queue runs dry, or every _BUSY_READ_S while busy (END,
        # RESET and heartbeats wait that long at most). A read that finds a message costs
        # no system call; only an empty one does.
        while True:
            if stop.is_set:
                self._stop_requested()
                return
            if self._work_available() and time.monotonic() < next_read:
                self._work_one()
                continue
            next_read = time.monotonic() + _BUSY_READ_S
            if self._read_distributor():
                return
            if self._work_available():
                continue
            timeout = max(1, int((self._last_heard + liveness - time.monotonic()) * 1000))
            events = dict(poller.poll(timeout))
            self._on_events(events)
            if not events and time.monotonic() - self._last_heard >= liveness:
                logger.info(
                    "worker %s: distributor silent, announcing again", self.worker_id.decode()
                )
                self._send_ready()
                self._last_heard = time.monotonic()

    def _stop_requested(self) -> None:
        logger.info("worker %s: stop requested", self.worker_id.decode())
        self._stop_early()

    def _send_ready(self) -> None:
        free = self._credit.announce(self._held())
        self._dealer.send_multipart(self._codec.ready(self.task_type, self._credit.capacity, free))

    def _ask_for_more(self) -> None:
        want = self._credit.request(self._held())
        if want:
            self._dealer.send_multipart(self._codec.credit(want))

    def _read_distributor(self) -> bool:
        """Handle what the distributor sent; ``True`` when the run is over."""
        dealer = self._dealer
        while True:
            try:
                frames = dealer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return False
            self._last_heard = time.monotonic()
            try:
                kind, body = protocol.decode(frames, _FROM_DISTRIBUTOR, "from the distributor")
            except ProtocolError as exc:
                self.drops.drop(exc.category, exc.reason)
                continue
            if kind == protocol.DATA:
                if body[0] == self._run_id:
                    self._credit.received(len(body[1]))
                    self._receive_items(body[1])
            elif kind == protocol.WELCOME:
                if body[0] != self._run_id:
                    self._drop_queued()
                self._run_id = body[0]
                self.metadata = body[1]
                self._accepted = True
                if not self._initialized:
                    self._initialized = True
                    self.init_worker()
                    self._initialize_threads()
            elif kind == protocol.RESET:
                self._drop_queued()
                self._accepted = False
                self._send_ready()
            elif kind == protocol.END:
                return True

    def _execute(self, seq: int, data: dict[str, Any]) -> None:
        """Run user code on one item, push its result, ask for more work."""
        started = time.perf_counter()
        try:
            result = self.handle_execution(data)
            frames = self._result_frames(seq, result)
        except Exception:
            self._report_failure(seq, traceback.format_exc(), "handle_execution")
        else:
            self._push.send_multipart(frames)
            self.items_processed += 1
        self._credit.observe(time.perf_counter() - started)
        self._ask_for_more()

    def _result_frames(
        self, seq: int, result: Any, codec: protocol.Codec | None = None
    ) -> list[bytes]:
        if result is not None and not isinstance(result, dict):
            raise TypeError(
                f"{type(self).__name__} must return a dict or None for the collector, "
                f"not {type(result).__name__}"
            )
        assert self._run_id is not None
        return (codec or self._codec).result(self._run_id, self.task_type, seq, result)

    def _report_failure(self, seq: int, error: str, where: str) -> None:
        self.items_failed += 1
        logger.error("item %s/%d raised in %s:\n%s", self.task_type, seq, where, error)
        self._dealer.send_multipart(self._codec.fail(seq, error))

    # -- what the two kinds of worker do differently ------------------------------------

    def _held(self) -> int:
        return 0

    def _work_available(self) -> bool:
        return False

    def _work_one(self) -> None:
        pass

    def _receive_items(self, items: list[list[Any]]) -> None:
        raise NotImplementedError

    def _drop_queued(self) -> None:
        pass

    def _register_extra(self, poller: zmq.Poller) -> None:
        pass

    def _on_events(self, events: dict[Any, int]) -> None:
        pass

    def _initialize_threads(self) -> None:
        pass

    def _stop_early(self) -> None:
        pass

    def _shutdown(self) -> None:
        pass


class SingleThreadedWorker(Worker):
    """Executes one item at a time in the process's own thread.

    Implement ``handle_execution(self, data, *args, **kwargs)``: ``data`` is the dict the
    task handed out; return a dict for the collector, or ``None``.
    """

    def __init__(self, *, settings: Settings | None = None) -> None:
        super().__init__(settings=settings)
        self._queue: deque[list[Any]] = deque()

    def _held(self) -> int:
        return len(self._queue)

    def _work_available(self) -> bool:
        return bool(self._queue) and self._accepted

    def _receive_items(self, items: list[list[Any]]) -> None:
        self._queue.extend(items)

    def _work_one(self) -> None:
        seq, data = self._queue.popleft()
        self._execute(seq, data)

    def _drop_queued(self) -> None:
        self._queue.clear()

    def _stop_early(self) -> None:
        if self._queue:
            self._dealer.send_multipart(self._codec.bye([seq for seq, _ in self._queue]))
            self._queue.clear()
        else:
            self._dealer.send_multipart(self._codec.bye([]))


class MultiThreadedWorker(Worker):
    """Executes up to ``n_threads`` items at once.

    ``handle_execution(data)`` runs first, in the main thread; what it returns is handed to
    ``handle_thread_execution(data, index)`` in one of the threads, whose return value (a
    dict or ``None``) goes to the collector. ``init_thread(index)`` runs once per thread.
    """

    #: How many items run at once, each in its own thread.
    n_threads: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        n = cls.__dict__.get("n_threads")
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise TypeError(f"{cls.__name__}.n_threads must be a positive int, got {n!r}")

    def __init__(self, *, settings: Settings | None = None) -> None:
        super().__init__(settings=settings)
        self._items: queue.SimpleQueue[tuple[int, Any] | None] = queue.SimpleQueue()
        # Threads put (seq, seconds, error or None) here and wake the main thread with
        # one message on an inproc socket, only if no wake-up is pending already: ten
        # threads finishing together cost one wake-up, not ten.
        self._finished: deque[tuple[int, float, str | None]] = deque()
        self._wake_pending = False
        self._in_threads = 0
        self._threads: list[threading.Thread] = []
        # Threads start with the worker, so the run does not wait for them, but take
        # no item before ``init_worker`` has run: then this is set (also to end them).
        self._go = threading.Event()
        self._closing = False
        self._done_address = f"inproc://zmqpipeline-done-{uuid.uuid4().hex}"

    @property
    def n_slots(self) -> int:  # type: ignore[override]
        return self.n_threads

    def init_thread(self, worker_index: int) -> None:
        """Runs once in each thread before it takes its first item."""

    def handle_thread_execution(self, data: Any, index: int) -> dict[str, Any] | None:
        """Execute one item in thread ``index``: ``data`` is what ``handle_execution``
        returned. Return a dict for the collector, or ``None``."""
        raise NotImplementedError(f"{type(self).__name__} must implement handle_thread_execution()")

    def _held(self) -> int:
        return self._in_threads

    def _register_extra(self, poller: zmq.Poller) -> None:
        self._done = self._ctx.socket(zmq.PULL)
        self._done.bind(self._done_address)
        poller.register(self._done, zmq.POLLIN)
        for index in range(self.n_threads):
            thread = threading.Thread(
                target=self._thread_main,
                args=(index,),
                name=f"zmqpipeline-thread-{index}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def _initialize_threads(self) -> None:
        self._go.set()

    def _receive_items(self, items: list[list[Any]]) -> None:
        for seq, data in items:
            try:
                handed = self.handle_execution(data)
            except Exception:
                self._report_failure(seq, traceback.format_exc(), "handle_execution")
                continue
            self._in_threads += 1
            self._items.put((seq, handed))
        self._ask_for_more()

    def _on_events(self, events: dict[Any, int]) -> None:
        if self._done not in events:
            return
        while True:  # wake-ups: their number means nothing
            try:
                self._done.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        self._wake_pending = False  # before draining: a thread finishing now wakes us again
        finished = self._finished
        while finished:
            seq, took, error = finished.popleft()
            self._in_threads -= 1
            self._credit.observe(took)
            if error is None:
                self.items_processed += 1
            else:
                self.items_failed += 1
                self._dealer.send_multipart(self._codec.fail(seq, error))
        self._ask_for_more()

    def _thread_main(self, index: int) -> None:
        codec = protocol.Codec(self.settings.max_message_bytes)
        push = open_socket(
            self._ctx,
            zmq.PUSH,
            self.collector_endpoint,
            bind=False,
            settings=self.settings,
            role="worker thread",
        )
        done = self._ctx.socket(zmq.PUSH)
        done.connect(self._done_address)
        try:
            self._go.wait()
            if self._closing:
                return  # ended before the run started
            try:
                self.init_thread(index)
            except Exception:
                logger.error("init_thread(%d) raised:\n%s", index, traceback.format_exc())
            while True:
                entry = self._items.get()
                if entry is None:
                    return
                seq, data = entry
                error: str | None = None
                started = time.perf_counter()
                try:
                    result = self.handle_thread_execution(data, index)
                    push.send_multipart(self._result_frames(seq, result, codec))
                except Exception:
                    text = traceback.format_exc()
                    logger.error(
                        "item %s/%d raised in handle_thread_execution (thread %d):\n%s",
                        self.task_type,
                        seq,
                        index,
                        text,
                    )
                    error = text
                self._finished.append((seq, time.perf_counter() - started, error))
                if not self._wake_pending:
                    self._wake_pending = True
                    done.send(b"")
        finally:
            push.close()
            done.close()

    def _stop_early(self) -> None:
        handed_back: list[int] = []
        while True:
            try:
                entry = self._items.get_nowait()
            except queue.Empty:
                break
            if entry is not None:
                handed_back.append(entry[0])
                self._in_threads -= 1
        self._join_threads()  # the threads finish the items they hold first
        self._on_events({self._done: zmq.POLLIN})
        self._dealer.send_multipart(self._codec.bye(handed_back))

    def _join_threads(self) -> None:
        if not self._go.is_set():
            self._closing = True
            self._go.set()
        for _ in self._threads:
            self._items.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def _shutdown(self) -> None:
        self._join_threads()
        done = getattr(self, "_done", None)
        if done is not None:
            done.close()
