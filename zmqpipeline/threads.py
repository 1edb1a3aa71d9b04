"""The threads of a :class:`~zmqpipeline.worker.MultiThreadedWorker`.

Each thread runs ``handle_thread_execution`` and packs the result with a codec of its own;
the main thread sends it. Threads wake the main thread with one message on an inproc
socket, only if no wake-up is pending already: ten threads finishing together cost one
wake-up, not ten.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import zmq

from . import protocol
from .runtime import UserCodeError, call_user

if TYPE_CHECKING:
    from .worker import MultiThreadedWorker

__all__ = ["ThreadPool"]

logger = logging.getLogger("zmqpipeline.worker")

#: (seq, seconds, the result packed as a RESULT entry, (error, exception names) or None)
Finished = tuple[int, float, bytes, "tuple[str, list[str]] | None"]


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
        self._go = threading.Event()
        self._closing = False
        self._address = f"inproc://zmqpipeline-done-{uuid.uuid4().hex}"
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

    def finished(self) -> Iterator[Finished]:
        """What the threads finished since the last call (drains the wake-ups first)."""
        while True:  # wake-ups: their number means nothing
            try:
                self.wakeup.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
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
        worker = self.worker
        codec = protocol.Codec(worker.settings.max_message_bytes)
        done = self._ctx.socket(zmq.PUSH)
        done.connect(self._address)
        try:
            self._go.wait()
            if self._closing:
                return  # ended before the run started
            try:
                call_user(logger, f"init_thread({index})", worker.init_thread, index)
            except UserCodeError:
                pass  # logged; the thread still takes items
            while (entry := self._items.get()) is not None:
                self._finished.append(self._execute(codec, index, *entry))
                if not self._wake_pending:
                    self._wake_pending = True
                    done.send(b"")
        finally:
            done.close(linger=0)

    def _execute(self, codec: protocol.Codec, index: int, seq: int, data: Any) -> Finished:
        worker = self.worker
        started = time.perf_counter()
        packed = b""
        failure = None
        try:
            result = call_user(
                logger,
                f"handle_thread_execution (thread {index})",
                worker.handle_thread_execution,
                data,
                index,
                item=(worker.task_type, seq),
            )
            packed = worker._result(seq, result, codec)
        except UserCodeError as exc:
            failure = (exc.text, exc.exc_types)
        except Exception as exc:  # the result itself is wrong (not a dict, cannot pack)
            failure = (f"{type(exc).__name__}: {exc}", [type(exc).__name__])
        return seq, time.perf_counter() - started, packed, failure
