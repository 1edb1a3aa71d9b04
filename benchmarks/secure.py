"""The cost of CURVE: throughput of empty items over tcp, plain against CURVE-secured.

Collector, distributor and N single-threaded workers run as separate processes on
127.0.0.1, the real roles; the workers do nothing and return None. The secured runs use
fresh keys (server pair for the distributor and collector, a client pair for the
workers, ZAP admitting the client key), given to each process through the documented
``ZMQPIPELINE_CURVE_*`` variables. Items per second = items / ``RunReport.wall_time_s``
(first item handed out -> last ACK); plain and CURVE runs alternate and each row gives the
median of the repeats. ``CURVE/plain`` is the secured throughput as a fraction of plain tcp.

    python benchmarks/secure.py --quick            # 5000 items, once, 1 worker
    python benchmarks/secure.py                    # 20000 items, 3 repeats, 1 and 2 workers
    python benchmarks/secure.py --payload 10000    # items carrying 10 kB each (bulk crypto)
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import zmq

import zmqpipeline as zp
from zmqpipeline.runtime.ports import free_port
from zmqpipeline.security import local_key_env

TASK_TYPE = zp.TaskType.register_type("BENCH_SECURE")
CURVE_ENV = (
    "ZMQPIPELINE_CURVE_SECRET_KEY",
    "ZMQPIPELINE_CURVE_SERVER_KEY",
    "ZMQPIPELINE_CURVE_AUTHORIZED_KEYS",
)


def build(n_items: int, payload: int = 0) -> tuple[Any, Any, Any]:
    work, results, acks = (f"tcp://127.0.0.1:{free_port()}" for _ in range(3))
    blob = os.urandom(payload)

    class EmptyTask(zp.Task):
        task_type = TASK_TYPE
        endpoint = zp.EndpointAddress(work)

        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def handle(self, data: Any, address: Any, msgtype: Any) -> dict[str, Any] | None:
            self.n += 1
            if self.n >= n_items:
                self.is_complete = True
            return {"blob": blob} if blob else None

    class EmptyWorker(zp.SingleThreadedWorker):
        task_type = TASK_TYPE
        endpoint = zp.EndpointAddress(work)
        collector_endpoint = zp.EndpointAddress(results)

        def handle_execution(self, data: Any, *args: Any, **kwargs: Any) -> None:
            return None

    class CountingCollector(zp.Collector):
        endpoint = zp.EndpointAddress(results)
        ack_endpoint = zp.EndpointAddress(acks)
        count = 0

        def handle_collection(self, data: Any, task_type: Any, msgtype: Any) -> None:
            self.count += 1

    return EmptyTask, EmptyWorker, CountingCollector


def _child(env: dict[str, str] | None, target: Any) -> None:
    for name in CURVE_ENV:
        os.environ.pop(name, None)
    os.environ.update(env or {})
    target()


def measure(n_items: int, n_workers: int, secure: bool, payload: int = 0) -> float:
    """Items per second of one run."""
    directory = tempfile.mkdtemp(prefix="zmqpipeline-secure-bench-")
    server_env: dict[str, str] | None = None
    client_env: dict[str, str] | None = None
    if secure:
        server_env, client_env = local_key_env(os.path.join(directory, "keys"))
    task, worker, collector = build(n_items, payload)
    ctx = multiprocessing.get_context("fork")
    reports = ctx.Queue()

    def run_distributor() -> None:
        report = zp.Distributor(collector.endpoint, collector.ack_endpoint, tasks=[task]).run()
        reports.put((report.total, report.wall_time_s))

    processes = [ctx.Process(target=_child, args=(server_env, lambda: collector().run()))]
    processes += [
        ctx.Process(target=_child, args=(client_env, lambda: worker().run()))
        for _ in range(n_workers)
    ]
    processes.append(ctx.Process(target=_child, args=(server_env, run_distributor)))
    try:
        for process in processes:
            process.start()
        total, seconds = reports.get(timeout=600)
        if total != n_items:
            raise SystemExit(f"collected {total} items, expected {n_items}")
        return n_items / seconds
    finally:
        for process in processes:
            process.join(10)
            if process.exitcode is None and process.pid is not None:
                os.kill(process.pid, signal.SIGKILL)
                process.join()
        reports.close()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--payload", type=int, default=0, help="bytes per item (default 0)")
    parser.add_argument("--quick", action="store_true", help="5000 items, once, 1 worker")
    args = parser.parse_args()
    if args.quick:
        args.items, args.repeats, args.workers = 5000, 1, [1]
    print(
        f"zmqpipeline {zp.__version__}, pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPU(s), {platform.machine()}"
    )
    kind = f"{args.payload}-byte" if args.payload else "empty"
    print(f"{args.items} {kind} items over tcp on 127.0.0.1, median of {args.repeats}")
    print(f"{'workers':>7} {'plain items/s':>14} {'CURVE items/s':>14} {'CURVE/plain':>12}")
    for n_workers in args.workers:
        plain: list[float] = []
        curve: list[float] = []
        for _ in range(args.repeats):  # alternate, so drift on the machine hits both alike
            plain.append(measure(args.items, n_workers, secure=False, payload=args.payload))
            curve.append(measure(args.items, n_workers, secure=True, payload=args.payload))
        p, c = statistics.median(plain), statistics.median(curve)
        print(f"{n_workers:>7} {p:>14,.0f} {c:>14,.0f} {c / p:>12.2f}", flush=True)


if __name__ == "__main__":
    main()
