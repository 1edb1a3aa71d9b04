"""What the crash journals cost: the same pipeline with and without journals, in one run.

Two rows, each run alternately without and with journals (``Distributor(journal=...)``
and ``Collector(journal=...)``, SQLite files in a fresh temporary directory), median of the
repeats:

* empty items: items per second (first item handed out -> the collector sees the end of
  the run), and the ratio with / without (target: at least 0.7);
* 10 ms items (``time.sleep(0.01)`` in the worker): wall time against the ideal
  (items x 10 ms / workers), with and without; the overhead should not change beyond noise.

    python benchmarks/journal.py --quick      # 5000 empty items, 200 x 10 ms, once
    python benchmarks/journal.py              # 50000 empty items, 1000 x 10 ms, 3 repeats
    python benchmarks/journal.py --transport tcp --workers 4
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from typing import Any, ClassVar

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as h

import zmqpipeline as zp

TASK_TYPE = zp.TaskType.register_type("BENCH_JOURNAL")
DELAY_S = 0.01


def build(endpoints: h.Endpoints, n_items: int, delay_s: float) -> tuple[Any, Any, Any]:
    class Items(h.BenchTask):
        task_type = TASK_TYPE
        endpoint = zp.EndpointAddress(endpoints.work)
        payload: ClassVar[dict[str, Any]] = {"delay": delay_s}

    Items.n_items = n_items

    class Worker(zp.SingleThreadedWorker):
        task_type = TASK_TYPE
        endpoint = zp.EndpointAddress(endpoints.work)
        collector_endpoint = zp.EndpointAddress(endpoints.results)

        def handle_execution(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            if data["delay"]:
                time.sleep(data["delay"])

    class Collector(h.TimingCollector):
        endpoint = zp.EndpointAddress(endpoints.results)
        ack_endpoint = zp.EndpointAddress(endpoints.acks)

    return Items, Worker, Collector


def one_run(transport: str, n_items: int, n_workers: int, delay_s: float, journals: bool) -> float:
    """Seconds from the first item handed out to the end of the run."""
    directory = tempfile.mkdtemp(prefix="zmqpipeline-journal-bench-")
    dist_journal = os.path.join(directory, "distributor.sqlite") if journals else None
    coll_journal = os.path.join(directory, "collector.sqlite") if journals else None
    started = h._FORK.Value("i", 0)
    try:
        with h.private_endpoints(transport) as endpoints:
            task, worker_cls, collector_cls = build(endpoints, n_items, delay_s)
            task._gate = (started, n_workers)

            def collector() -> dict[str, Any]:
                role = collector_cls(journal=coll_journal)
                role.run()
                return {"count": role.count, "t_finished": role.t_finished}

            def distributor() -> dict[str, Any]:
                dist = zp.Distributor(
                    endpoints.results, endpoints.acks, tasks=[task], journal=dist_journal
                )
                report = dist.run()
                assert task.last is not None
                return {"report": asdict(report), "t_first": task.last.t_first}

            def worker() -> int:
                role = worker_cls()
                with started.get_lock():
                    started.value += 1
                role.run()
                return int(role.items_processed)

            roles: list[h.Role] = [
                ("collector", collector, [endpoints.results, endpoints.acks]),
                ("distributor", distributor, [endpoints.work]),
            ]
            roles += [("worker", worker, [])] * n_workers
            out = h.run_processes(roles, 20 + n_items / 2000)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    col, dist = out["collector"][0], out["distributor"][0]
    collected = sum(dist["report"]["collected"].values())
    if collected != n_items or col["count"] != n_items:
        raise h.BenchmarkError(f"collected {collected} of {n_items}")
    return float(col["t_finished"] - dist["t_first"])


def measure(
    transport: str, n_items: int, n_workers: int, delay_s: float, repeat: int
) -> tuple[float, float, list[float]]:
    """Median seconds without and with journals, the two run alternately, and each pair's
    ratio with / without in throughput (the machine may be shared: pairs drift less)."""
    without: list[float] = []
    with_: list[float] = []
    for _ in range(repeat):
        without.append(one_run(transport, n_items, n_workers, delay_s, journals=False))
        with_.append(one_run(transport, n_items, n_workers, delay_s, journals=True))
    ratios = [off / on for off, on in zip(without, with_, strict=True)]
    return statistics.median(without), statistics.median(with_), ratios


def main() -> None:
    parser = h.argument_parser(__doc__)
    parser.add_argument("--transport", choices=["ipc", "tcp"], default="ipc")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--items", type=int, default=None, help="empty items (default 50000)")
    parser.add_argument("--slow-items", type=int, default=None, help="10 ms items (default 1000)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per cell (default 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: small and once")
    args = parser.parse_args()
    n_empty = args.items or (5000 if args.quick else 50_000)
    n_slow = args.slow_items or (200 if args.quick else 1000)
    repeat = args.repeat or (1 if args.quick else 3)

    h.print_facts("zmqpipeline journal benchmark")
    print(f"transport {args.transport}, workers {args.workers}, repeat {repeat} (median)")
    print()
    print("| items | without journals | with journals | with / without (median of pairs) |")
    print("| --- | ---: | ---: | ---: |")
    off, on, empty = measure(args.transport, n_empty, args.workers, 0.0, repeat)
    print(
        f"| {n_empty} empty | {n_empty / off:,.0f} items/s | {n_empty / on:,.0f} items/s "
        f"| {statistics.median(empty):.2f} (target >= 0.7) |"
    )
    off, on, slow = measure(args.transport, n_slow, args.workers, DELAY_S, repeat)
    ideal = n_slow * DELAY_S / args.workers
    print(
        f"| {n_slow} x 10 ms | {off:.3f} s, +{(off / ideal - 1) * 100:.1f} % vs ideal "
        f"| {on:.3f} s, +{(on / ideal - 1) * 100:.1f} % vs ideal "
        f"| {statistics.median(slow):.3f} |"
    )
    print()
    for name, ratios in (("empty", empty), ("10 ms", slow)):
        print(f"with / without, pair by pair, {name}: " + ", ".join(f"{r:.2f}" for r in ratios))


if __name__ == "__main__":
    main()
