"""Scaling out: 1 to 200 zmqpipeline worker processes on 10 ms items, over ipc.

For each worker count N, one run of collector, distributor and N SingleThreadedWorker
processes (each its own process, forked; benchmarks/_harness.py) on N x 100 x --seconds
items that each sleep 10 ms, so every row is about --seconds of work. Per row:

* items/s (items / first item handed out -> collector's handle_finished) against the
  ideal N x 100/s;
* the distributor's CPU share: its utime + stime (/proc/self/stat, read inside the
  distributor process) over the dispatch phase, first item -> last item handed out,
  divided by that wall time (100 % = one core);
* the distributor's peak RSS (VmHWM in /proc/self/status) at the end of its run();
* start-up: from just before the first process is forked to the first item executed by
  the last worker to get one (each worker stamps its first item in a shared array). The
  first item is held back until every worker process has started and been let in (as in
  every benchmark here; benchmarks/_harness.py), so that is part of it; "spread" is the
  part after the first item went out, i.e. how long the distributor took to get an item
  to every worker.

The end prints where items/s first falls more than 10 % below the ideal.

    python benchmarks/scale.py --quick --workers 1 10 50     # 1 s of work per row
    python benchmarks/scale.py                               # 1 10 50 100 200, 5 s per row
    python benchmarks/scale.py --workers 100 200 --seconds 10 --json scale.json
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from typing import Any, ClassVar

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as h

import zmqpipeline as zp

DELAY_S = 0.01
TASK_TYPE = zp.TaskType.register_type("BENCH_SCALE")
BEND = 0.9  # items/s below this fraction of the ideal: the curve has bent
_FORK = multiprocessing.get_context("fork")


def build(endpoints: h.Endpoints, n_items: int, n_workers: int) -> tuple[Any, Any, Any, Any]:
    """The roles, and the shared array where each worker stamps its first item."""
    firsts = _FORK.Array("d", n_workers)  # time.monotonic() of each worker's first item
    slot = _FORK.Value("i", 0)  # next free entry of firsts (its lock guards both)

    class ScaleTask(h.BenchTask):
        task_type = TASK_TYPE
        endpoint = zp.EndpointAddress(endpoints.work)
        payload: ClassVar[dict[str, Any]] = {"workload": DELAY_S}

        def handle(self, data: dict[str, Any], address: bytes, msgtype: str) -> dict[str, Any]:
            first = self.handed == 0
            out = super().handle(data, address, msgtype)  # the first call waits for workers
            if first:
                self.cpu_first = h.proc_cpu_s()
            if self.is_complete:
                self.cpu_last = h.proc_cpu_s()
                self.t_last = time.monotonic()
            return out

        def stats(self) -> dict[str, Any]:
            return {
                "t_first": self.t_first,
                "dispatch_cpu_s": self.cpu_last - self.cpu_first,
                "dispatch_wall_s": self.t_last - (self.t_first or self.t_last),
                "peak_rss_mib": h.proc_peak_rss_mib(),
            }

    ScaleTask.n_items = n_items

    class Worker(zp.SingleThreadedWorker):
        task_type = TASK_TYPE
        endpoint = zp.EndpointAddress(endpoints.work)
        collector_endpoint = zp.EndpointAddress(endpoints.results)
        stamped = False

        def handle_execution(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            if not self.stamped:
                self.stamped = True
                with slot.get_lock():
                    firsts[slot.value] = time.monotonic()
                    slot.value += 1
            time.sleep(data["workload"])

    class Collector(h.TimingCollector):
        endpoint = zp.EndpointAddress(endpoints.results)
        ack_endpoint = zp.EndpointAddress(endpoints.acks)

    return ScaleTask, Worker, Collector, (firsts, slot)


def run_row(n_workers: int, seconds: float) -> dict[str, Any]:
    n_items = max(1, round(n_workers * seconds / DELAY_S))
    with h.private_endpoints("ipc") as endpoints:
        task, worker, collector, (firsts, slot) = build(endpoints, n_items, n_workers)
        t0 = time.monotonic()
        result = h.run_pipeline(
            task,
            worker,
            collector,
            n_workers,
            timeout_s=60 + 3 * seconds + n_workers * 0.5,
        )
    if result.collected != n_items or result.failed:
        raise h.BenchmarkError(
            f"{n_workers} workers: collected {result.collected} of {n_items}, "
            f"{result.failed} failed"
        )
    stats = result.task_stats
    stamped = list(firsts[: slot.value])
    rate = n_items / result.dispatch_s
    ideal = n_workers / DELAY_S
    return {
        "workers": n_workers,
        "items": n_items,
        "wall_s": result.dispatch_s,
        "items_per_s": rate,
        "ideal_per_s": ideal,
        "efficiency": rate / ideal,
        "dist_cpu_share": stats["dispatch_cpu_s"] / stats["dispatch_wall_s"]
        if stats["dispatch_wall_s"]
        else None,
        "dist_cpu_s": stats["dispatch_cpu_s"],
        "dist_peak_rss_mib": stats["peak_rss_mib"],
        "workers_served": len(stamped),
        "ready_s": max(stamped) - t0 if stamped else None,
        "spread_s": max(stamped) - stats["t_first"] if stamped else None,
        "per_worker_min": min(result.per_worker),
        "per_worker_max": max(result.per_worker),
        "run_s": result.run_s,
    }


def main() -> None:
    parser = h.argument_parser(__doc__)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 10, 50, 100, 200])
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="seconds of work per row: items = workers x 100 x seconds (default 5; --quick: 1)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s of work per row")
    parser.add_argument("--json", metavar="PATH", help="also write every row as JSON")
    args = parser.parse_args()
    seconds = args.seconds or (1.0 if args.quick else 5.0)

    h.print_facts("zmqpipeline scale benchmark (10 ms items, SingleThreadedWorker, ipc)")
    print(f"workers {args.workers}, {seconds:g} s of work per row (items = workers x 100 x s)")
    print(
        "items/s = items / (first item handed out -> collector handle_finished); "
        "ideal = workers x 100/s"
    )
    print(flush=True)

    table: list[dict[str, Any]] = []
    for n_workers in args.workers:
        row = run_row(n_workers, seconds)
        table.append(row)
        print(
            f"  {n_workers} workers: {row['items_per_s']:,.0f} items/s "
            f"({row['efficiency'] * 100:.1f}% of ideal)",
            file=sys.stderr,
            flush=True,
        )

    header = (
        f"{'workers':>7} {'items':>7} {'items/s':>9} {'ideal/s':>8} {'of ideal':>8} "
        f"{'dist CPU':>8} {'dist RSS MiB':>12} {'ready s':>7} {'spread s':>8} "
        f"{'served':>6} {'items/worker':>13} {'run() s':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in table:
        share = row["dist_cpu_share"]
        ready, spread = row["ready_s"], row["spread_s"]
        split = f"{row['per_worker_min']}..{row['per_worker_max']}"
        print(
            f"{row['workers']:>7} {row['items']:>7} {row['items_per_s']:>9,.0f} "
            f"{row['ideal_per_s']:>8,.0f} {row['efficiency'] * 100:>7.1f}% "
            f"{(f'{share * 100:.0f}%' if share is not None else '-'):>8} "
            f"{row['dist_peak_rss_mib']:>12.1f} "
            f"{(f'{ready:.2f}' if ready is not None else '-'):>7} "
            f"{(f'{spread:.3f}' if spread is not None else '-'):>8} "
            f"{row['workers_served']:>6} "
            f"{split:>13} {row['run_s']:>7.2f}"
        )
    print()
    print("of ideal: items/s / (workers x 100/s)")
    print("dist CPU: distributor utime+stime / wall, first -> last item handed out (100% = a core)")
    print("dist RSS: distributor peak RSS (VmHWM) at the end of its run()")
    print(
        "ready:    first fork -> first item of the last worker to get one (includes the "
        "hold-backs); spread: first item handed out -> that same moment"
    )
    print("served:   workers that executed at least one item; items/worker: min..max")
    print()
    bent = next((row for row in table if row["efficiency"] < BEND), None)
    if bent is None:
        print(
            f"no bend: items/s within {(1 - BEND) * 100:.0f}% of the ideal up to "
            f"{max(r['workers'] for r in table)} workers"
        )
    else:
        before = [r for r in table if r["workers"] < bent["workers"] and r["efficiency"] >= BEND]
        share = bent["dist_cpu_share"]
        print(
            f"bends at {bent['workers']} workers: {bent['efficiency'] * 100:.1f}% of ideal "
            f"({bent['items_per_s']:,.0f} of {bent['ideal_per_s']:,.0f} items/s)"
            + (f", distributor at {share * 100:.0f}% of a core" if share is not None else "")
            + (
                f"; within {(1 - BEND) * 100:.0f}% up to {max(r['workers'] for r in before)}"
                if before
                else ""
            )
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {"facts": h.machine_facts(), "seconds": seconds, "rows": table}, out, indent=1
            )


if __name__ == "__main__":
    main()
