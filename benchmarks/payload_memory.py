"""Bounded memory with big items: 1 000 items of 8 MiB through 2 workers (issue 30).

Each role runs in a process of its own, started fresh (``spawn``: nothing inherited from
this script), and reads its own peak RSS (``VmHWM`` of ``/proc/self/status``) when its
``run()`` returns, beside its RSS at start. Every item is a new bytes object (made by the
task as a real one reads a file), so the distributor's memory shows the items it keeps.
The collector checks every item was collected once; the distributor's report says how
many items were handed out again (retries), handed back, or failed.

    python benchmarks/payload_memory.py                       # both directions
    python benchmarks/payload_memory.py --items 200 --direction to-workers
    ZMQPIPELINE_MAX_IN_FLIGHT_BYTES=134217728 python benchmarks/payload_memory.py
    python benchmarks/payload_memory.py --collector-ms 10   # a collector slower than its workers

The target: every role's peak RSS at most 200 MiB plus ``max_in_flight_bytes``.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import zmqpipeline as zp
from zmqpipeline.settings import Settings

MiB = 1024 * 1024
SPAWN = multiprocessing.get_context("spawn")
ENV = os.environ.get
zp.TaskType.register_type("MEMORY")
N = int(ENV("PM_ITEMS", "0"))
SIZE = int(ENV("PM_SIZE", "0"))
TO_WORKERS = ENV("PM_DIRECTION", "to-workers") == "to-workers"
FOLDER = ENV("PM_FOLDER", "/tmp")
COLLECT_S = float(ENV("PM_COLLECT_MS", "0")) / 1000  # a slow collector's time per result


@functools.cache
def _base() -> bytes:
    return os.urandom(64) * (max(SIZE, 64) // 64)


def blob(i: int) -> bytes:
    """Item ``i``'s bytes: a new object each time, its number in its first 8 bytes."""
    return b"%08d" % i + _base()[8:]


def status_mib(field: str) -> float:
    """``VmHWM`` (peak RSS) or ``VmRSS`` of this process, MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


class MemoryTask(zp.Task):
    task_type = zp.TaskType("MEMORY")
    endpoint = zp.EndpointAddress(f"ipc://{FOLDER}/work.ipc")

    def initialize(self, metadata: Any = None) -> None:
        self.i = 0

    def handle(self, data: Any, address: Any, msgtype: Any) -> dict[str, Any]:
        i, self.i = self.i, self.i + 1
        self.is_complete = self.i >= N
        return {"i": i, "blob": blob(i)} if TO_WORKERS else {"i": i}


class MemoryWorker(zp.SingleThreadedWorker):
    task_type = zp.TaskType("MEMORY")
    endpoint = MemoryTask.endpoint
    collector_endpoint = zp.EndpointAddress(f"ipc://{FOLDER}/results.ipc")

    def handle_execution(self, data: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        i = data["i"]
        if TO_WORKERS:
            value = data["blob"]
            ok = len(value) == SIZE and bytes(value[:8]) == b"%08d" % i
            return {"i": i, "ok": ok}
        return {"i": i, "ok": True, "blob": blob(i)}


class MemoryCollector(zp.Collector):
    endpoint = MemoryWorker.collector_endpoint
    ack_endpoint = zp.EndpointAddress(f"ipc://{FOLDER}/acks.ipc")

    def initialize_counts(self) -> None:
        self.seen: dict[int, int] = {}
        self.bad = 0

    def handle_collection(self, data: Any, task_type: Any, msgtype: Any) -> None:
        i = data["i"]
        self.seen[i] = self.seen.get(i, 0) + 1
        ok = data["ok"]
        if not TO_WORKERS:
            value = data["blob"]
            ok = ok and len(value) == SIZE and bytes(value[:8]) == b"%08d" % i
        self.bad += not ok
        if COLLECT_S:
            time.sleep(COLLECT_S)  # (user code that takes time, not a synchronisation)


def role(name: str, out: Any) -> None:
    """Run one role; put its peak RSS (and what it saw) on ``out``."""
    start_rss = status_mib("VmRSS")
    extra: dict[str, Any] = {}
    if name == "distributor":
        report = zp.Distributor(
            MemoryWorker.collector_endpoint, MemoryCollector.ack_endpoint, tasks=[MemoryTask]
        ).run()
        extra = {
            "wall_s": report.wall_time_s,
            "collected": report.total,
            "failed": len(report.failed),
            "retries": report.retries,
            "handed_out": sum(w["handed_out"] for w in report.workers),
            "handed_back": sum(w["handed_back"] for w in report.workers),
        }
    elif name == "collector":
        collector = MemoryCollector()
        collector.initialize_counts()
        collector.run()
        seen = collector.seen
        extra = {
            "distinct": len(seen),
            "twice": sum(1 for c in seen.values() if c > 1),
            "missing": sum(1 for i in range(N) if i not in seen),
            "bad": collector.bad,
        }
    else:
        MemoryWorker().run()
    out.put((name, status_mib("VmHWM"), start_rss, extra))


def measure(
    items: int, size: int, direction: str, workers: int, collect_ms: float = 0.0
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="zp-pmem-") as folder:
        os.environ.update(
            PM_ITEMS=str(items),
            PM_SIZE=str(size),
            PM_DIRECTION=direction,
            PM_FOLDER=folder,
            PM_COLLECT_MS=str(collect_ms),
        )
        out = SPAWN.Queue()
        names = ["collector"] + ["worker"] * workers + ["distributor"]
        procs = [SPAWN.Process(target=role, args=(name, out)) for name in names]
        started = time.perf_counter()
        for p in procs:
            p.start()
        reports = [out.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(30)
        elapsed = time.perf_counter() - started
    peaks: dict[str, list[float]] = {}
    row: dict[str, Any] = {"direction": direction, "elapsed_s": elapsed}
    for name, peak, start_rss, extra in reports:
        peaks.setdefault(name, []).append(peak)
        row.setdefault("start_rss", {}).setdefault(name, []).append(start_rss)
        row.update(extra)
    row["peaks"] = peaks
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--mib", type=int, default=8, help="MiB per item (or result)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--direction", choices=["to-workers", "in-results", "both"], default="both")
    parser.add_argument(
        "--collector-ms", type=float, default=0.0, help="a slow collector: ms per result"
    )
    parser.add_argument("--json", action="store_true", help="print each row as JSON too")
    args = parser.parse_args()
    limit = Settings.from_env().max_in_flight_bytes
    bound = 200 + limit / MiB
    print(
        f"{args.items} items of {args.mib} MiB, {args.workers} workers, ipc; "
        f"max_in_flight_bytes {limit / MiB:.0f} MiB: bound per role {bound:.0f} MiB"
    )
    print(
        "| direction | MB/s | peak RSS MiB distributor | workers | collector "
        "| collected once | twice | missing | handed out | handed back | retries | failed "
        "| within bound |"
    )
    print(
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    )
    directions = ["to-workers", "in-results"] if args.direction == "both" else [args.direction]
    for direction in directions:
        row = measure(args.items, args.mib * MiB, direction, args.workers, args.collector_ms)
        peaks = row["peaks"]
        every = [p for ps in peaks.values() for p in ps]
        mbs = args.items * args.mib * MiB / 1e6 / row["wall_s"]
        print(
            f"| {direction} | {mbs:.0f} | {peaks['distributor'][0]:.0f} "
            f"| {'/'.join(f'{p:.0f}' for p in peaks['worker'])} | {peaks['collector'][0]:.0f} "
            f"| {row['distinct'] - row['twice']} | {row['twice']} | {row['missing']} "
            f"| {row['handed_out']} | {row['handed_back']} | {row['retries']} | {row['failed']} "
            f"| {'yes' if max(every) <= bound else 'NO'} |",
            flush=True,
        )
        if args.json:
            print(json.dumps(row))


if __name__ == "__main__":
    main()
