"""``MultiThreadedWorker`` and its threads.

Each thread runs ``handle_thread_execution`` and checks its result; the main thread packs
and sends the results together. Threads wake the main thread with one message on an inproc
socket only when it is needed: no batch is held (the main thread is not watching the
clock), the threads have nothing queued (they need credit), or many results wait. While
the main thread holds a batch it comes back by the batch's deadline and takes what finished
meanwhile: ten threads finishing items cost one wake-up per batch, not one per item.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, ClassVar

import zmq

from ..runtime.runtime import UserCodeError, call_user, user_code_error
from ..runtime.transport import NOBLOCK, readable
from .worker import Worker

__all__ = ["MultiThreadedWorker", "ThreadPool"]

logger = logging.getLogger("zmqpipeline.worker")

#: (seq, seconds, the result, (error, exception names) or None)
Finished = tuple[int, float, Any, "tuple[str, list[str]] | None"]


class ThreadPool:
    """``n_threads`` threads taking items from one queue. They start with the worker, so
    the run does not wait for them, but take no item before :meth:`go` (after
    ``init_worker``)."""

    def __init__(self, worker: MultiThreadedWorker, ctx: zmq.Context[Any]) -> None:
        self.worker = worker
        self._ctx = ctx
        self._items: queue.SimpleQueue[tuple[int, Any] | None] = queue.SimpleQueue()
        self._finished: deque[Finished] = deque()
        self._wake_pending = False
        #: The main thread holds a batch and will look at ``_finished`` by its deadline.
        self.watching = False
        # as many as end a batch: the main thread sends them and asks for more then
        self.wake_at = worker.batch.max_items
        self._go = threading.Event()
        self._closing = False
        self._address = f"inproc://zmqpipeline-done-{os.urandom(16).hex()}"
        self.wakeup: zmq.Socket[Any] = ctx.socket(zmq.PULL)
        self.wakeup.bind(self._address)
        self._threads = [
            threading.Thread(
                target=self._main, args=(i,), name=f"zmqpipeline-thread-{i}", daemon=True
            )
            for i in range(worker.n_threads)
        ]
        for thread in self._threads:
            thread.start()

    def go(self) -> None:
        self._go.set()

    def submit(self, seq: int, data: Any) -> None:
        self._items.put((seq, data))

    def has_finished(self) -> bool:
        return bool(self._finished)

    def finished(self) -> Iterator[Finished]:
        """What the threads finished since the last call (drains the wake-ups first)."""
        wakeup = self.wakeup
        while readable(wakeup):  # wake-ups: their number means nothing
            wakeup.recv(NOBLOCK)
        self._wake_pending = False  # before draining: a thread finishing now wakes us again
        while self._finished:
            yield self._finished.popleft()

    def take_back(self, limit: int | None = None) -> list[int]:
        """Items no thread has started (up to ``limit``): they go back to the distributor."""
        seqs: list[int] = []
        while limit is None or len(seqs) < limit:
            try:
                entry = self._items.get_nowait()
            except queue.Empty:
                return seqs
            if entry is not None:
                seqs.append(entry[0])
            else:  # the end marker is not ours to take
                self._items.put(None)
                break
        return seqs

    def join(self) -> None:
        if not self._go.is_set():
            self._closing = True
            self._go.set()
        for _ in self._threads:
            self._items.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def close(self) -> None:
        self.wakeup.close(linger=0)

    def _main(self, index: int) -> None:
        done = self._ctx.socket(zmq.PUSH)
        done.connect(self._address)
        try:
            self._go.wait()
            if self._closing:
                return  # ended before the run started
            try:
                call_user(logger, f"init_thread({index})", self.worker.init_thread, index)
            except UserCodeError:
                pass  # logged; the thread still takes items
            self._work(index, done)
        finally:
            done.close(linger=0)

    def _work(self, index: int, done: zmq.Socket[Any]) -> None:
        # Every item's path, kept short (ten threads wake from their items together and
        # take turns with the GIL): user code is called directly, ``user_code_error``
        # being ``call_user``'s except branch.
        worker, finished, items, clock = self.worker, self._finished, self._items, time.perf_counter
        handle, batch = worker.handle_thread_execution, worker.batch
        failure: tuple[str, list[str]] | None
        while (entry := items.get()) is not None:
            seq, data = entry
            started = clock()
            failure = None
            try:
                result = handle(data, index)
            except Exception as exc:
                what = f"handle_thread_execution (thread {index})"
                error = user_code_error(logger, what, exc, (worker.task_type, seq))
                result, failure = None, (error.text, error.exc_types)
            if result is not None and type(result) is not dict:
                try:
                    worker.check_result(result)
                except TypeError as exc:  # the result itself is wrong (not a dict)
                    result, failure = None, (f"TypeError: {exc}", ["TypeError"])
            finished.append((seq, clock() - started, result, failure))
            # Appended first, then asked: the main thread sets ``watching`` before it
            # looks at ``_finished`` again, so one of the two sees the other's step.
            if not self._wake_pending and (
                not self.watching
                or items.empty()
                or len(finished) + len(batch.items) >= self.wake_at
            ):
                self._wake_pending = True
                done.send(b"")


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

    @property
    def n_slots(self) -> int:  # type: ignore[override]
        return self.n_threads

    def init_thread(self, worker_index: int) -> None:
        """Runs once in each thread before it takes its first item."""

    def handle_thread_execution(self, data: Any, index: int) -> dict[str, Any] | None:
        """Execute one item in thread ``index``: ``data`` is what ``handle_execution``
        returned. Return a dict for the collector, or ``None``."""
        raise NotImplementedError(f"{type(self).__name__} must implement handle_thread_execution()")

    def _start_extra(self) -> None:
        self._pool = ThreadPool(self, self._rt.ctx)

    def _register_extra(self, poller: zmq.Poller) -> None:
        poller.register(self._pool.wakeup, zmq.POLLIN)

    def _initialize_threads(self) -> None:
        self._pool.go()

    def _items_arrived(self) -> None:
        logic = self._logic
        if not logic.accepted:
            return
        while logic.queue and not self._unsent.full():  # (big results not yet out: wait)
            seq, data = logic.queue.popleft()
            try:
                handed = call_user(
                    logger,
                    "handle_execution",
                    self.handle_execution,
                    data,
                    item=(self.task_type, seq),
                )
            except UserCodeError as exc:
                self.items_failed += 1
                logic.fail(seq, exc.text, exc.exc_types)
                continue
            logic.busy += 1
            self._pool.submit(seq, handed)
        self._ask_for_more()

    def _take_back(self, n: int) -> list[int]:
        seqs = self._pool.take_back(n)
        self._logic.busy -= len(seqs)
        return seqs

    def _on_events(self, events: dict[Any, int]) -> None:
        pool = self._pool
        if pool.wakeup in events or pool.has_finished():
            self._collect_finished()
        if self._logic.queue:  # held back while big results were not yet out
            self._items_arrived()

    def _collect_finished(self) -> None:
        pool = self._pool
        while True:
            self._take_finished()
            pool.watching = bool(self.batch)  # we come back by the batch's deadline
            if not pool.has_finished():
                return  # nothing finished between the take and the flag

    def _take_finished(self) -> None:
        logic, now = self._logic, time.perf_counter()
        batch = self.batch
        for seq, took, result, failure in self._pool.finished():
            logic.finished(took)
            if failure is None:
                if batch.items and batch.run != logic.run:
                    self._flush_results(now, force=True)  # the held ones are the old run's
                batch.add(seq, result, now, logic.run, logic.credit.item_s)  # type: ignore[arg-type]
            else:
                self.items_failed += 1
                logic.fail(seq, failure[0], failure[1])
        self._flush_results(now)
        self._ask_for_more()

    def _stop_early(self) -> None:
        logger.info("worker %s: stop requested", self.worker_id.decode())
        handed_back = self._pool.take_back()
        self._logic.busy -= len(handed_back)
        self._pool.join()  # the threads finish the items they hold first
        self._collect_finished()
        self._leave(handed_back)

    def _shutdown(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.join()
            pool.close()
