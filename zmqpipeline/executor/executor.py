"""``zmqpipeline.Executor``: a :class:`concurrent.futures.Executor` whose workers are
zmqpipeline workers, on this machine and others.

The distributor and the collector of the executor's run live in the calling process, on
threads of their own (each with its own sockets, ipc between them); calls are items of
one open-ended task, pushed in by a feeder thread; the collector resolves each future as
its result arrives. Local workers are child processes; remote ones connect over tcp with
``zmqpipeline executor-worker tcp://HOST:PORT``.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor as _FuturesExecutor
from concurrent.futures import Future
from typing import Any, TextIO

from ..distributor import Distributor
from ..security import Security
from ..settings import Settings
from ..types import EndpointAddress
from .batch import pack_arguments
from .calls import Call, Calls
from .mapping import (
    FIRST_ITEMS_PER_THREAD,
    MAP_BYTES_AHEAD,
    MapFeed,
    MapProgress,
    argument_columns,
    map_results,
    size_of,
)
from .naming import check_arguments, function_name
from .roles import collector_class, feed, start_workers, task_class
from .worker import results_endpoint

__all__ = ["Executor"]

logger = logging.getLogger("zmqpipeline.executor")

#: Calls handed to the distributor ahead of the workers, per worker (and at least
#: ``_MIN_WINDOW``): enough that no worker waits, few enough that ``cancel()`` works.
_WINDOW_PER_WORKER = 512
_MIN_WINDOW = 1024
#: ``map``'s calls submitted and not yet read, at most, when ``buffersize`` is not given
#: (and results of 64 MiB: see ``mapping.MAP_BYTES_AHEAD``).
_MAP_BUFFER_PER_WORKER = 16384
_WORKER_EXIT_S = 5.0
_live: weakref.WeakSet[Executor] = weakref.WeakSet()


def _check(
    workers: Any,
    endpoint: str | None,
    max_attempts: Any,
    window: Any,
    threads: Any,
    prefetch: Any = None,
) -> None:
    """Refuse the arguments an executor cannot run with, naming which."""
    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an int >= 0, not {workers!r}")
    if workers == 0 and endpoint is None:
        raise ValueError("Executor(workers=0) needs an endpoint remote workers connect to")
    if not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be an int >= 1, not {max_attempts!r}")
    if window is not None and (not isinstance(window, int) or window < 1):
        raise ValueError(f"window must be an int >= 1, not {window!r}")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an int >= 1, not {threads!r}")
    if prefetch is not None and (not isinstance(prefetch, int) or prefetch < 0):
        raise ValueError(f"prefetch must be None or an int >= 0, not {prefetch!r}")


class Executor(_FuturesExecutor):
    """Run functions on zmqpipeline workers; results come back to this process.

    ``workers``: local worker processes to start (default ``os.cpu_count()``; ``0``:
    none, wait for remote ones). ``endpoint``: where workers connect, e.g.
    ``'tcp://*:5600'`` for workers on other machines (results come back on the next
    port); default a private ipc file. ``threads``: calls each local worker runs at once;
    ``prefetch``: calls it holds beyond those, waiting behind its running calls
    (default: what its threads finish in about 20 ms at the time its last calls took,
    1 to 32; a number fixes it).
    ``max_attempts`` (default 1: a function may have side effects) and ``retry_for``:
    the retry policy of an exception, as for a :class:`~zmqpipeline.Task`. ``security``:
    CURVE keys for tcp (see docs/security.md). ``control_endpoint``: where
    ``zmqpipeline status`` sees the run. ``settings``: the run's tunables. ``window``:
    calls handed to the distributor ahead of the workers (they run and cannot be
    cancelled; the rest wait here, cancellable); default 512 per worker, at least 1024.
    """

    def __init__(
        self,
        workers: int | None = None,
        endpoint: str | None = None,
        *,
        threads: int = 1,
        prefetch: int | None = None,
        max_attempts: int = 1,
        retry_for: tuple[type[BaseException] | str, ...] | None = None,
        security: Security | None = None,
        control_endpoint: str | None = None,
        settings: Settings | None = None,
        window: int | None = None,
    ) -> None:
        workers = os.cpu_count() or 1 if workers is None else workers
        _check(workers, endpoint, max_attempts, window, threads, prefetch)
        self._settings = settings or Settings.from_env(security=security)
        self._dir = tempfile.mkdtemp(prefix="zmqp-executor-")
        ipc = f"ipc://{self._dir}"
        work = str(EndpointAddress(endpoint)) if endpoint else f"{ipc}/work"
        results = results_endpoint(work) if endpoint else f"{ipc}/results"
        if window is None:
            window = max(_MIN_WINDOW, _WINDOW_PER_WORKER * max(1, workers) * threads)
        self._calls = Calls(window=min(window, self._settings.stage_backlog))
        self._buffer = _MAP_BUFFER_PER_WORKER * max(1, workers) * threads
        self._workers, self._threads_per_worker = workers, threads
        self._ids = itertools.count()
        self._retry = max_attempts > 1
        self._shutdown_lock = threading.Lock()
        push = f"{ipc}/push"
        calls_task = task_class(work, max_attempts, retry_for)
        collector = collector_class(results, f"{ipc}/acks", self._calls)(settings=self._settings)
        self._distributor = Distributor(
            results,
            f"{ipc}/acks",
            tasks=[calls_task],
            settings=self._settings,
            on_progress=self._progress,
            progress_interval_s=0.1,
            control_endpoint=control_endpoint,
            push_endpoint=push,
        )
        if endpoint is None:  # only our own workers can join: none is late once all were told
            self._distributor.expected_workers = workers
        self._collector, self._collector_ended = collector, threading.Event()
        self._threads = self._start_threads(self._collect, push)
        local = work.replace("tcp://*:", "tcp://127.0.0.1:").replace("//0.0.0.0:", "//127.0.0.1:")
        self._children: list[subprocess.Popen[bytes]] = start_workers(
            workers,
            local,
            results_endpoint(local) if endpoint else results,
            threads,
            prefetch,
            self._settings,
            self._dir,
        )
        _live.add(self)

    def _collect(self) -> None:
        try:
            self._collector.run()
        finally:
            self._collector_ended.set()

    def _start_threads(self, collect: Any, push: str) -> list[threading.Thread]:
        """The collector, the distributor and the feeder, on daemon threads of the caller."""
        threads = [
            threading.Thread(target=collect, name="zmqpipeline-executor-collector"),
            threading.Thread(target=self._run, name="zmqpipeline-executor-distributor"),
            threading.Thread(
                target=feed,
                args=(self._calls, push, self._settings),
                name="zmqpipeline-executor-feeder",
            ),
        ]
        for thread in threads:
            thread.daemon = True
            thread.start()
        return threads

    # -- concurrent.futures.Executor -------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; a :class:`~concurrent.futures.Future` of its
        result. ``TypeError`` at once when ``fn`` cannot travel by name or an argument
        cannot travel as msgpack."""
        name = function_name(fn)
        check_arguments(name, args, kwargs)
        payload = {"i": next(self._ids), "f": name, "a": args, "k": kwargs}
        if self._retry:
            payload["t"] = 1
        future: Future[Any] = Future()
        self._calls.add(Call(payload, future))
        return future

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
        progress: bool | TextIO = False,
    ) -> Iterator[Any]:
        """``fn`` over the items of ``iterables`` (in step), results in order. The input is
        read ahead by at most ``buffersize`` calls (default: a bound per worker), so an
        endless iterator works. Calls travel many to an item: as many as take about
        0.1 s on a worker, once their time is known, and never fewer than ``chunksize``
        (with retries, ``chunksize`` exactly). ``progress``:
        draw the map's progress on stderr (or on the stream given), as ``zmqpipeline
        run`` does: a bar with an ETA when the inputs have a ``len()``."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None:
            if not isinstance(buffersize, int) or isinstance(buffersize, bool):
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or >= 1.")
        name = function_name(fn)
        end = None if timeout is None else time.monotonic() + timeout
        shown, total = None, size_of(iterables)
        if progress:
            stream = None if progress is True else progress
            shown = MapProgress(name, total, stream)
        threads = max(1, self._workers) * self._threads_per_worker
        if buffersize is not None:  # counted in calls (in chunks with a chunksize)
            calls, items = buffersize * chunksize, buffersize
        else:  # enough chunks for every worker thread, whatever their size
            calls = max(self._buffer, FIRST_ITEMS_PER_THREAD * threads * chunksize)
            items = max(1, calls // chunksize)
        feed = MapFeed(
            argument_columns(iterables),
            lambda columns, single: self._submit_map(name, columns, single),
            chunksize,
            not self._retry,
            calls,
            items,
            threads,
            total=total,
            bytes_ahead=MAP_BYTES_AHEAD if buffersize is None else None,
        )
        feed.fill(first=True)  # submitted now, as Executor.map does
        return map_results(feed, end, shown)

    def _submit_map(self, name: str, columns: list[list[Any]], single: bool) -> Future[Any]:
        future: Future[Any] = Future()
        if single:
            args = [column[0] for column in columns]
            check_arguments(name, args, {})
            payload: dict[str, Any] = {"i": next(self._ids), "f": name, "a": args, "k": {}}
        else:
            payload = {"i": next(self._ids), "f": name, "b": pack_arguments(name, columns)}
        if self._retry:
            payload["t"] = 1
        self._calls.add(Call(payload, future, chunk=not single))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more calls; ``cancel_futures`` cancels those not handed out yet. ``wait``:
        return once every call is resolved and the workers have exited."""
        with self._shutdown_lock:
            if cancel_futures:
                self._calls.cancel_waiting()
            self._calls.close()
        _live.discard(self)
        if wait:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()

    # -- the run ---------------------------------------------------------------------------

    def _progress(self, summary: dict[str, Any]) -> None:
        if summary["failed"]:
            self._calls.failed(summary["failed"])

    def _run(self) -> None:
        """The distributor's thread: the run, then the workers' exit and the clean-up."""
        try:
            report = self._distributor.run()
            self._calls.failed(report.failed)
            if report.aborted:
                self._calls.break_all("the executor's run was stopped")
        except BaseException as exc:  # the distributor itself failed: nothing can go on
            logger.exception("the executor's distributor failed")
            self._calls.break_all(f"the executor's distributor failed: {exc!r}")
        finally:
            # A run that ended before the collector followed it (no call at all): the
            # collector heard no START, and would wait for a distributor for ever.
            if not self._collector_ended.wait(self._settings.end_timeout_s):
                self._collector.stop()
            self._calls.break_all("the executor has shut down")  # only what is unresolved
            self._end_children()
            shutil.rmtree(self._dir, ignore_errors=True)

    def _end_children(self) -> None:
        deadline = time.monotonic() + _WORKER_EXIT_S
        for child in self._children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("executor worker %d did not exit; killing it", child.pid)
                child.kill()
                child.wait()

    @property
    def worker_pids(self) -> list[int]:
        """The process ids of the local workers this executor started."""
        return [child.pid for child in self._children]


@atexit.register
def _shutdown_live() -> None:
    """At interpreter exit, executors not shut down finish their calls first (as
    :class:`~concurrent.futures.ProcessPoolExecutor` does)."""
    for executor in list(_live):
        executor.shutdown(wait=True)
