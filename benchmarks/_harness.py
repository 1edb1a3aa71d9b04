"""Shared plumbing for the benchmarks: run a pipeline's roles as separate processes and time it.

Every role (collector, distributor, each worker) runs in its own process, forked from the
benchmark script (the ``fork`` context: role classes defined inside functions just work).
They talk over private ipc files in a fresh temporary directory, or over 127.0.0.1 tcp on
free ports. Whatever happens, :func:`run_processes` ends every process it started (by PID:
SIGTERM, then SIGKILL) and the temporary directory is removed.

Times are taken with ``time.monotonic()`` (CLOCK_MONOTONIC on Linux, one clock for every
process on the machine), so a time stamped in the distributor and one stamped in the
collector can be subtracted. Three wall times are kept for each run:

``dispatch_s``
    from the first item handed out to ``handle_finished`` in the collector (the run's
    END, sent as soon as the last ACK is in). The first item is handed out only once every
    worker is up and has been let in, so the clock does not run while a worker is still
    starting: the collector binds only after every worker process has started (plus
    ``_GATE_SETTLE_S``), and nothing is handed out before the collector answers, so the
    distributor meanwhile takes every worker's READY and confirmation; then
    :class:`BenchTask` holds its first item back ``_GATE_SETTLE_S`` more, while the workers
    connect to the collector. The bare pipeline (``_bare.py``) likewise waits for every
    worker's READY.
``collector_s``
    the tutorial's stopwatch: first ``handle_collection`` to ``handle_finished``, both in
    the collector. It misses the first item's own duration, so it reads one item shorter.
``run_s``
    the distributor's ``RunReport.wall_time_s``: the whole ``run()``, with socket set-up,
    waiting for workers, and the end of run handshake and grace period.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import msgpack
import zmq

import zmqpipeline as zp
from zmqpipeline.runtime import ports

__all__ = [
    "STDLIB_POOLS",
    "BenchTask",
    "BenchmarkError",
    "Endpoints",
    "PipelineResult",
    "TimingCollector",
    "argument_parser",
    "empty_worker",
    "machine_facts",
    "make_endpoints",
    "percentile",
    "private_endpoints",
    "proc_cpu_s",
    "proc_peak_rss_mib",
    "run_pipeline",
    "run_processes",
    "run_stdlib_pool",
    "sequential_loop",
    "spread",
    "wait_bound",
]

_FORK = multiprocessing.get_context("fork")
_GATE_TIMEOUT_S = 30.0
#: After the last worker process said it is about to run, how long the first item is held
#: back so that worker's connection and READY are in (not part of any measured time).
_GATE_SETTLE_S = 0.1


class BenchmarkError(RuntimeError):
    """A role failed, or the run did not finish in time."""


# -- endpoints ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    work: str  # distributor ROUTER (bind) <- worker DEALERs
    results: str  # collector PULL (bind) <- worker PUSHes, distributor PUSH
    acks: str  # collector PUSH (bind) -> distributor PULL
    directory: str | None = None  # the temporary directory of the ipc files


def free_port() -> int:
    """A free 127.0.0.1 port below the kernel's ephemeral range, never one given before in
    this process (:func:`zmqpipeline.runtime.ports.free_port`): a port the kernel hands out
    for ``bind(0)`` may be taken before we bind it again, as the local end of a connection
    (payload.py's grid lost a cell to that: "Address already in use")."""
    return ports.free_port("127.0.0.1")


def make_endpoints(transport: str) -> Endpoints:
    """Fresh endpoints: ipc files in a new temporary directory, or free 127.0.0.1 ports."""
    if transport == "ipc":
        directory = tempfile.mkdtemp(prefix="zmqpipeline-bench-")
        return Endpoints(
            f"ipc://{directory}/work.ipc",
            f"ipc://{directory}/results.ipc",
            f"ipc://{directory}/acks.ipc",
            directory,
        )
    if transport == "tcp":
        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(free_port())
        work, results, acks = (f"tcp://127.0.0.1:{port}" for port in sorted(ports))
        return Endpoints(work, results, acks, None)
    raise ValueError(f"unknown transport {transport!r} (ipc or tcp)")


class private_endpoints:
    """``with private_endpoints('ipc') as ep:`` — the temporary directory goes at the end."""

    def __init__(self, transport: str) -> None:
        self.transport = transport

    def __enter__(self) -> Endpoints:
        self.endpoints = make_endpoints(self.transport)
        return self.endpoints

    def __exit__(self, *exc: object) -> None:
        if self.endpoints.directory:
            shutil.rmtree(self.endpoints.directory, ignore_errors=True)


# -- processes ---------------------------------------------------------------------------


def _child(results: Any, role: str, target: Callable[[], Any]) -> None:
    code = 0
    try:
        value = target()
        results.put((role, os.getpid(), value, None))
    except BaseException:  # the parent gets the traceback, whatever it was
        results.put((role, os.getpid(), None, traceback.format_exc()))
        code = 1
    finally:
        results.close()
        results.join_thread()  # deliver before exiting
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _end_processes(processes: list[Any], grace_s: float) -> list[str]:
    """Wait up to ``grace_s`` for ``processes`` to exit; then SIGTERM, then SIGKILL, by PID.
    Returns a note per process that had to be ended."""
    notes: list[str] = []
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        alive = [p for p in processes if p.exitcode is None]
        if not alive:
            break
        for process in alive:
            notes.append(f"{process.name} (pid {process.pid}) sent {signal.Signals(sig).name}")
            try:
                os.kill(process.pid, sig)
            except ProcessLookupError:
                pass
        for process in alive:
            process.join(wait_s)
    still = [p for p in processes if p.exitcode is None]
    if still:  # cannot happen after SIGKILL short of an unkillable (D state) process
        raise BenchmarkError("processes did not exit: " + ", ".join(str(p.pid) for p in still))
    return notes


def wait_bound(endpoint: str, timeout_s: float = 10.0) -> None:
    """Return once something is bound at ``endpoint`` (an ipc file exists / a tcp port
    accepts), so a role started next connects at once instead of retrying 100 ms later."""
    scheme, _, location = endpoint.partition("://")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if scheme == "ipc":
            if os.path.exists(location):
                return
        else:
            host, _, port = location.rpartition(":")
            try:
                socket.create_connection((host, int(port)), timeout=0.1).close()
                return
            except OSError:
                pass
        time.sleep(0.002)
    raise BenchmarkError(f"nothing bound at {endpoint} after {timeout_s:.0f} s")


Role = tuple[str, Callable[[], Any], Sequence[str]]  # (name, target, endpoints it binds)


def run_processes(roles: Sequence[Role], timeout_s: float) -> dict[str, list[Any]]:
    """Fork one process per ``(role, target, binds)``, in order, each once the previous one
    has bound its ``binds`` endpoints; return each role's return values by role name.

    Raises :class:`BenchmarkError` if a role raised or not all returned within ``timeout_s``.
    Every process has exited when this returns or raises.
    """
    results = _FORK.Queue()
    processes = []
    failure: str | None = None
    out: dict[str, list[Any]] = {}
    try:
        for role, target, binds in roles:
            process = _FORK.Process(
                target=_child, args=(results, role, target), name=f"bench-{role}"
            )
            process.start()
            processes.append(process)
            for endpoint in binds:
                wait_bound(endpoint)
        deadline = time.monotonic() + timeout_s
        for _ in processes:
            try:
                role, pid, value, error = results.get(
                    timeout=max(0.05, deadline - time.monotonic())
                )
            except queue.Empty:
                done = sum(len(v) for v in out.values())
                failure = f"timed out after {timeout_s:.0f} s ({done}/{len(processes)} roles done)"
                break
            if error is not None:
                failure = f"{role} (pid {pid}) raised:\n{error}"
                break
            out.setdefault(role, []).append(value)
    except BaseException as exc:  # e.g. wait_bound gave up, or Ctrl-C
        failure = failure or f"{type(exc).__name__}: {exc}"
        raise
    finally:
        notes = _end_processes(processes, grace_s=5.0 if failure is None else 0.5)
        results.close()
    if failure is not None:
        raise BenchmarkError(failure + ("\n" + "\n".join(notes) if notes else ""))
    if notes:
        raise BenchmarkError("roles had to be killed: " + "; ".join(notes))
    return out


# -- the roles of a zmqpipeline run ------------------------------------------------------


class BenchTask(zp.Task):
    """Hands out ``n_items`` copies of ``payload``; holds the first back until every worker
    process has started (see the module docstring) and records when the first went out."""

    n_items: ClassVar[int] = 0
    payload: ClassVar[dict[str, Any]] = {}
    _gate: ClassVar[tuple[Any, int] | None] = None  # (shared counter, workers expected)
    last: ClassVar[BenchTask | None] = None  # the instance the distributor made

    def __init__(self) -> None:
        super().__init__()
        self.handed = 0
        self.t_first: float | None = None
        type(self).last = self

    @classmethod
    def wait_for_workers(cls) -> None:
        """Until every worker process has started, then ``_GATE_SETTLE_S`` more."""
        gate = cls._gate
        if gate is None:
            return
        counter, expected = gate
        deadline = time.monotonic() + _GATE_TIMEOUT_S
        while counter.value < expected:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"only {counter.value} of {expected} workers started")
            time.sleep(0.001)
        time.sleep(_GATE_SETTLE_S)

    def handle(self, data: dict[str, Any], address: bytes, msgtype: str) -> dict[str, Any]:
        if self.handed == 0:
            self.wait_for_workers()
            self.t_first = time.monotonic()
        self.handed += 1
        if self.handed >= self.n_items:
            self.is_complete = True
        return self.payload

    def stats(self) -> dict[str, Any]:
        """Extra figures for the parent (subclasses add theirs)."""
        return {}


class TimingCollector(zp.Collector):
    """Counts results; stamps the first collection and the end of the run."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.count = 0
        self.t_first: float | None = None
        self.t_finished: float | None = None

    def handle_collection(
        self, data: dict[str, Any], task_type: str, msgtype: str
    ) -> dict[str, Any] | None:
        if self.t_first is None:
            self.t_first = time.monotonic()
        self.count += 1
        return None

    def handle_finished(self, data: dict[str, Any], task_type: str) -> None:
        self.t_finished = time.monotonic()


@dataclass
class PipelineResult:
    items: int
    collected: int
    failed: int
    dispatch_s: float
    collector_s: float
    run_s: float
    per_worker: list[int]  # items each worker process executed, largest first
    latency_ms: dict[str, float] = field(default_factory=dict)
    task_stats: dict[str, Any] = field(default_factory=dict)
    #: CPU seconds (user + system) each role's process used, forked to exit
    cpu_s: dict[str, float] = field(default_factory=dict)


def _cpu_s() -> float:
    """CPU seconds this (forked) process has used: its own, not its parent's."""
    times = os.times()
    return times.user + times.system


def run_pipeline(
    task_cls: type[BenchTask],
    worker_cls: type[Any],
    collector_cls: type[TimingCollector],
    n_workers: int,
    *,
    settings: zp.Settings | None = None,
    timeout_s: float = 600.0,
) -> PipelineResult:
    """Run collector, distributor and ``n_workers`` workers, each its own process."""
    started = _FORK.Value("i", 0)
    task_cls._gate = (started, n_workers)

    def collector() -> dict[str, Any]:
        # Bound only once the workers are up: until then the distributor hands out
        # nothing and lets every worker in (see the module docstring).
        task_cls.wait_for_workers()
        role = collector_cls(settings=settings)
        role.run()
        return {
            "count": role.count,
            "t_first": role.t_first,
            "t_finished": role.t_finished,
            "cpu_s": _cpu_s(),
        }

    def distributor() -> dict[str, Any]:
        dist = zp.Distributor(
            collector_cls.endpoint,
            collector_cls.ack_endpoint,
            tasks=[task_cls],
            settings=settings,
        )
        report = dist.run()
        task = task_cls.last
        assert task is not None
        return {
            "report": asdict(report),
            "t_first": task.t_first,
            "stats": task.stats(),
            "cpu_s": _cpu_s(),
        }

    def worker() -> tuple[int, float]:
        role = worker_cls(settings=settings)
        with started.get_lock():
            started.value += 1
        role.run()
        return int(role.items_processed), _cpu_s()

    # The collector last: it binds once the workers are up (see the module docstring).
    roles: list[Role] = [("distributor", distributor, [task_cls.endpoint])]
    roles += [("worker", worker, [])] * n_workers
    roles += [("collector", collector, [collector_cls.endpoint, collector_cls.ack_endpoint])]
    out = run_processes(roles, timeout_s)
    col, dist = out["collector"][0], out["distributor"][0]
    report = dist["report"]
    if col["t_finished"] is None or dist["t_first"] is None:
        raise BenchmarkError("the run ended without items or without handle_finished")
    return PipelineResult(
        items=task_cls.n_items,
        collected=sum(report["collected"].values()),
        failed=len(report["failed"]),
        dispatch_s=col["t_finished"] - dist["t_first"],
        collector_s=col["t_finished"] - (col["t_first"] or col["t_finished"]),
        run_s=report["wall_time_s"],
        per_worker=sorted((n for n, _ in out["worker"]), reverse=True),
        latency_ms=report["latency_ms"],
        task_stats=dist["stats"],
        cpu_s={
            "distributor": dist["cpu_s"],
            "collector": col["cpu_s"],
            "workers": sum(cpu for _, cpu in out["worker"]),
        },
    )


def empty_worker(kind: zp.TaskType, endpoints: Endpoints) -> type[zp.SingleThreadedWorker]:
    """A single-threaded worker that does nothing with its items and returns None."""

    class EmptyWorker(zp.SingleThreadedWorker):
        task_type = kind
        endpoint = zp.EndpointAddress(endpoints.work)
        collector_endpoint = zp.EndpointAddress(endpoints.results)

        def handle_execution(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            return None

    return EmptyWorker


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose help is the script's docstring: first paragraph, then the rest."""
    return argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=doc.split("\n\n", 1)[1],
    )


# -- baselines and statistics ------------------------------------------------------------

#: The standard-library pools :func:`run_stdlib_pool` knows.
STDLIB_POOLS = ("ppe", "apply", "map")


def _sleep_item(delay_s: float) -> int:
    """One pool item: sleep ``delay_s``; returns the PID that ran it (for the split)."""
    if delay_s:
        time.sleep(delay_s)
    return os.getpid()


def run_stdlib_pool(
    kind: str, n_items: int, n_procs: int, delay_s: float, chunksize: int | None = None
) -> tuple[float, list[int]]:
    """Time ``n_items`` items of ``delay_s`` through a standard-library pool of ``n_procs``
    forked processes: ``ppe`` is ``ProcessPoolExecutor.submit`` per item, ``apply`` is
    ``multiprocessing.Pool.apply_async`` per item, ``map`` is ``Pool.map`` (its default
    chunksize unless ``chunksize`` is given). The pool is started and warmed first, so
    process start-up is not timed; the clock runs from the first submission to the last
    result. Returns (seconds, items run by each process, largest first). Every pool process
    has exited when this returns (the pools are context managers)."""
    warm = [0.0] * (n_procs * 20)
    if kind == "ppe":
        with concurrent.futures.ProcessPoolExecutor(n_procs, mp_context=_FORK) as executor:
            list(executor.map(_sleep_item, warm))
            started = time.monotonic()
            futures = [executor.submit(_sleep_item, delay_s) for _ in range(n_items)]
            pids = [future.result() for future in futures]
            seconds = time.monotonic() - started
    elif kind in ("apply", "map"):
        with _FORK.Pool(n_procs) as pool:
            pool.map(_sleep_item, warm, chunksize=1)
            started = time.monotonic()
            if kind == "apply":
                pending = [pool.apply_async(_sleep_item, (delay_s,)) for _ in range(n_items)]
                pids = [result.get() for result in pending]
            else:
                pids = pool.map(_sleep_item, [delay_s] * n_items, chunksize)
            seconds = time.monotonic() - started
    else:
        raise ValueError(f"unknown pool {kind!r} (one of {', '.join(STDLIB_POOLS)})")
    return seconds, sorted(Counter(pids).values(), reverse=True)


def proc_cpu_s(pid: int | str = "self") -> float:
    """CPU seconds (utime + stime) a process has used so far, from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # fields[0] is field 3, the state
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mib(pid: int | str = "self") -> float:
    """Peak resident set size (``VmHWM``) of a process so far, from ``/proc/<pid>/status``."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise BenchmarkError(f"no VmHWM in /proc/{pid}/status")


def sequential_loop(n: int, delay_s: float) -> float:
    """The tutorial's baseline: ``time.sleep(delay_s)`` ``n`` times in this process."""
    started = time.monotonic()
    for _ in range(n):
        time.sleep(delay_s)
    return time.monotonic() - started


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1)."""
    ordered = sorted(values)
    rank = max(1, int(-(-fraction * len(ordered) // 1)))  # ceil
    return ordered[min(len(ordered), rank) - 1]


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def machine_facts() -> dict[str, str]:
    facts = {
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "msgpack": ".".join(map(str, msgpack.version)),
        "zmqpipeline": zp.__version__,
        "platform": platform.platform(),
    }
    try:
        facts["load average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    facts["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return facts


def print_facts(title: str) -> None:
    print(title)
    for key, value in machine_facts().items():
        print(f"  {key:<12} {value}")
    print(flush=True)
