"""The executor's worker: an ordinary zmqpipeline worker that imports the function an
item names and calls it. ``zmqpipeline executor-worker tcp://HOST:5600`` runs one on
another machine; the :class:`~zmqpipeline.Executor` starts its local ones the same way
(``python -m zmqpipeline executor-worker``), a fresh interpreter each (no fork).

An item is ``{'i': id, 'f': 'module:qualname', 'a': args, 'k': kwargs}`` (or ``'b'``, a
batch of ``map``'s calls: their argument lists packed as one value, see :mod:`.batch`);
its result ``{'i': id, 'r': value}`` (a batch's: ``'r'`` its results packed and ``'d'``
the seconds its calls took) or, when the
function raised, ``{'i': id, 'x': description}`` (see :mod:`.errors`): an exception is
an outcome delivered to the caller, not a failure retried, unless the item says ``'t'``
(the executor's ``max_attempts`` > 1: then it raises, and the run's retry policy applies).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..settings import Settings
from ..types import EndpointAddress, TaskType
from ..utils.serializer import find_unpackable
from ..worker import MultiThreadedWorker, Worker
from .batch import run_batch
from .errors import describe
from .naming import Resolver

__all__ = [
    "EXECUTOR_LINGER_S",
    "EXECUTOR_PREFETCH",
    "EXECUTOR_QUEUE_S",
    "EXECUTOR_TASK_TYPE",
    "call_item",
    "executor_settings",
    "results_endpoint",
    "run_worker",
    "worker_class",
]

#: The task type of every executor's calls.
EXECUTOR_TASK_TYPE = TaskType.register_type("zmqpipeline.executor")
_SIMPLE = (int, float, str, bytes, bool, type(None))
_PARENT_CHECK_S = 0.5
#: Calls a worker holds beyond one per thread, at most (quick calls: enough to keep them
#: flowing, benchmarks/). By default a worker holds what its threads finish in about
#: :data:`EXECUTOR_QUEUE_S` at the time its last calls took, and one call per thread at
#: least (no thread waits on a round trip): long calls are not queued behind one another
#: on one worker while another has none (``prefetch=N`` fixes it at ``N`` instead).
EXECUTOR_PREFETCH = 32
EXECUTOR_QUEUE_S = 0.02
#: The longest an executor worker holds a result to send it with others (a pipeline's
#: workers hold theirs up to ``Settings.result_linger_s``): a future, a ``map`` window
#: and ``as_completed`` wait on each one. Quick calls still go many to a message (a
#: batch also forms by count, and whenever the worker runs dry).
EXECUTOR_LINGER_S = 0.002


def results_endpoint(endpoint: str) -> str:
    """Where results go for work handed out at ``endpoint``: the next tcp port, or a
    ``-results`` ipc file beside it."""
    address = EndpointAddress(endpoint)
    if address.scheme == "tcp":
        host, _, port = address.location.rpartition(":")
        return f"tcp://{host}:{int(port) + 1}"
    return f"{address.scheme}://{address.location}-results"


def _checked(value: Any) -> Any:
    if type(value) in _SIMPLE:
        return value
    found = find_unpackable(value)
    if found is not None:
        path, kind = found
        where = "" if path == "value" else f" at {path}"
        raise TypeError(f"the function returned a {kind}{where}, which msgpack cannot carry")
    return value


def call_item(resolve: Resolver, data: dict[str, Any]) -> dict[str, Any]:
    """Run one item; its outcome for the collector (see the module's text)."""
    item_id = data["i"]
    try:
        fn = resolve(data["f"])
    except Exception as exc:
        return {"i": item_id, "x": describe(exc)}
    if "b" in data:
        return run_batch(fn, data)
    try:
        return {"i": item_id, "r": _checked(fn(*data["a"], **data["k"]))}
    except Exception as exc:
        if data.get("t"):
            raise
        return {"i": item_id, "x": describe(exc)}


def worker_class(
    endpoint: str,
    results: str | None = None,
    threads: int = 1,
    allow: Sequence[str] = (),
    prefetch: int | None = None,
) -> type[Worker]:
    """A worker class for the executor whose calls are handed out at ``endpoint``.

    Calls run on threads (one by default) while the worker's own loop sends each result
    as it comes, so a finished call's future never waits for the next call to end.
    ``prefetch``: calls held beyond one per thread (``None``: by their time, see
    :data:`EXECUTOR_PREFETCH`; :func:`executor_settings` sets the bounds)."""
    resolve = Resolver(allow)
    attrs: dict[str, Any] = {
        "prefetch": prefetch,
        "task_type": EXECUTOR_TASK_TYPE,
        "endpoint": EndpointAddress(endpoint),
        "collector_endpoint": EndpointAddress(results or results_endpoint(endpoint)),
    }

    def passes(self: Any, data: dict[str, Any], *args: Any, **kw: Any) -> Any:
        return data

    def in_thread(self: Any, data: dict[str, Any], index: int) -> Any:
        return call_item(resolve, data)

    attrs.update(n_threads=threads, handle_execution=passes, handle_thread_execution=in_thread)
    return type("ExecutorThreadedWorker", (MultiThreadedWorker,), attrs)


def executor_settings(settings: Settings) -> Settings:
    """An executor worker's tunables: results held at most :data:`EXECUTOR_LINGER_S`
    (a future waits on each), credit for :data:`EXECUTOR_QUEUE_S` of calls, between one
    and :data:`EXECUTOR_PREFETCH` beyond one per thread."""
    return dataclasses.replace(
        settings,
        result_linger_s=min(settings.result_linger_s, EXECUTOR_LINGER_S),
        prefetch=1,
        max_prefetch=EXECUTOR_PREFETCH,
        prefetch_window_s=EXECUTOR_QUEUE_S,
    )


def _watch_parent(parent: int) -> None:
    """The executor that started us has gone (it was killed): so do we."""
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK_S)
    os._exit(0)


def run_worker(
    endpoint: str,
    *,
    results: str | None = None,
    threads: int = 1,
    allow: Sequence[str] = (),
    prefetch: int | None = None,
    parent: int | None = None,
    settings: Settings | None = None,
    lifetime_s: float | None = None,
    lifetime_stagger_s: float = 0.0,
    idle_timeout_s: float | None = None,
) -> int:
    """Run one executor worker until its executor ends, or its lifetime or idle timeout
    does (see :mod:`zmqpipeline.worker.lifetime`: it hands back the calls it has not
    started, which go to other workers); returns the calls it ran."""
    if parent is not None:
        if os.getppid() != parent:
            return 0
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    settings = executor_settings(settings or Settings.from_env())
    worker = worker_class(endpoint, results, threads, allow, prefetch)(settings=settings)
    worker.lifetime_s, worker.idle_timeout_s = lifetime_s, idle_timeout_s
    worker.lifetime_stagger_s = lifetime_stagger_s
    worker.run()
    return int(worker.items_processed)
