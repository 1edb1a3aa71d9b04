"""Big items: MB/s and peak RSS per role, zmqpipeline against a bare pyzmq pipeline of the
same shape (benchmarks/_bare_payload.py, ``copy=False``) and ``ProcessPoolExecutor.map``,
side by side in one run.

Each cell moves ``--mib`` MiB in items of one size, either as the items (``to workers``:
``{'blob': bytes}`` out, a tiny result back) or as the results (``in results``: tiny
items, ``{'blob': bytes}`` back), with 1 or 2 single-threaded workers over ipc or tcp.
Every item (or result) is the same bytes object, made before the clock starts, in all
three: what is measured is moving it, not making it.

    python benchmarks/payload.py            # 64 KiB, 1, 8, 32 MiB; 1 and 2 workers; ipc, tcp
    python benchmarks/payload.py --quick    # 1 and 8 MiB, 2 workers, ipc
    python benchmarks/payload.py --repeat 3 # each cell 3 times, alternated: the medians

Peak RSS per role is ``VmHWM`` of the forked role, reset when it starts (it counts the
pages it shares with this script, the same for ours and bare).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import _harness as h
from _bare_payload import peak_mib, reset_peak, run_bare

import zmqpipeline as zp

FORK = multiprocessing.get_context("fork")
KiB, MiB = 1024, 1024 * 1024
zp.TaskType.register_type("PAYLOAD")
TINY = b"t"


def _endpoints(transport: str, folder: str) -> dict[str, str]:
    names = ("work", "results", "acks", "done")
    if transport == "tcp":
        return {name: f"tcp://127.0.0.1:{h.free_port()}" for name in names}
    return {name: f"ipc://{folder}/{name}.ipc" for name in names}


def run_ours(
    ep: dict[str, str], n: int, workers: int, item: bytes, result: bytes
) -> tuple[float, dict[str, float]]:
    """Seconds from the first hand-out to the last ACK, and peak RSS (MiB) per role."""

    class Payload(zp.Task):
        task_type = zp.TaskType("PAYLOAD")
        endpoint = zp.EndpointAddress(ep["work"])

        def initialize(self, metadata: Any = None) -> None:
            self.i = 0

        def handle(self, data: Any, address: Any, msgtype: Any) -> dict[str, Any]:
            self.i += 1
            self.is_complete = self.i >= n
            return {"blob": item}

    class Worker(zp.SingleThreadedWorker):
        task_type = zp.TaskType("PAYLOAD")
        endpoint = zp.EndpointAddress(ep["work"])
        collector_endpoint = zp.EndpointAddress(ep["results"])

        def handle_execution(self, data: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
            return {"n": len(data["blob"]), "blob": result}

    class Sink(zp.Collector):
        endpoint = zp.EndpointAddress(ep["results"])
        ack_endpoint = zp.EndpointAddress(ep["acks"])

        def handle_collection(self, data: Any, task_type: Any, msgtype: Any) -> None:
            data["blob"]

    out = FORK.Queue()

    def role(name: str, target: Any) -> Any:
        def run() -> None:
            reset_peak()
            value = target()
            out.put((name, value, peak_mib()))

        return FORK.Process(target=run)

    def distribute() -> float:
        return zp.Distributor(ep["results"], ep["acks"], tasks=[Payload]).run().wall_time_s

    procs = [role("collector", lambda: Sink().run())]
    procs += [role("worker", lambda: Worker().run()) for _ in range(workers)]
    procs.append(role("distributor", distribute))
    for p in procs:
        p.start()
    reports = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(10)
    rss: dict[str, float] = {}
    elapsed = 0.0
    for name, value, peak in reports:
        rss[name] = max(rss.get(name, 0.0), peak)
        if name == "distributor":
            elapsed = value
    return elapsed, rss


def _pool_fn(arg: tuple[bytes, int]) -> Any:
    data, back = arg
    return b"r" * back if back else len(data)


def run_pool(n: int, workers: int, size: int, to_workers: bool) -> float:
    """Seconds for ``ProcessPoolExecutor(workers).map`` over the same bytes (started and
    warmed before the clock)."""
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=FORK) as pool:
        list(pool.map(_pool_fn, [(b"", 0)] * workers))
        args = [(b"x" * size, 0)] * n if to_workers else [(b"", size)] * n
        start = time.perf_counter()
        for _ in pool.map(_pool_fn, args):
            pass
        return time.perf_counter() - start


def cell(
    size: int, workers: int, transport: str, to_workers: bool, total: int, repeat: int = 1
) -> dict[str, Any]:
    """MB/s of ours, bare and the pool (each the median of ``repeat`` runs, the three
    alternated), and the largest peak RSS per role of ours and bare."""
    n = max(8, total // size)
    big = os.urandom(64) * (size // 64)
    item, result = (big, TINY) if to_workers else (TINY, big)
    mb = n * size / 1e6
    speeds: dict[str, list[float]] = {"ours": [], "bare": [], "pool": []}
    row: dict[str, Any] = {"ours_rss": {}, "bare_rss": {}}
    for _ in range(repeat):
        for name, run in (("ours", run_ours), ("bare", run_bare)):
            with tempfile.TemporaryDirectory(prefix="zp-payload-") as folder:
                seconds, rss = run(_endpoints(transport, folder), n, workers, item, result)
            speeds[name].append(mb / seconds)
            for role, peak in rss.items():
                row[name + "_rss"][role] = max(row[name + "_rss"].get(role, 0.0), peak)
        speeds["pool"].append(mb / run_pool(n, workers, size, to_workers))
    row.update({name: statistics.median(values) for name, values in speeds.items()})
    row["n"] = n
    return row


def _size_name(size: int) -> str:
    return f"{size // MiB} MiB" if size >= MiB else f"{size // KiB} KiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 8 MiB, 2 workers, ipc")
    parser.add_argument("--mib", type=int, default=512, help="MiB moved per cell")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per cell (alternated; medians shown)"
    )
    args = parser.parse_args()
    sizes = [MiB, 8 * MiB] if args.quick else [64 * KiB, MiB, 8 * MiB, 32 * MiB]
    worker_counts = [2] if args.quick else [1, 2]
    transports = ["ipc"] if args.quick else ["ipc", "tcp"]
    total = (128 if args.quick else args.mib) * MiB
    print(
        "| size | direction | workers | link | ours MB/s | bare MB/s | pool MB/s | ours/bare "
        "| ours/pool | peak RSS MiB ours (D/W/C) | bare (D/W/C) |"
    )
    print("| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for transport in transports:
        for workers in worker_counts:
            for size in sizes:
                for to_workers in (True, False):
                    r = cell(size, workers, transport, to_workers, total, args.repeat)
                    o, b = r["ours_rss"], r["bare_rss"]
                    print(
                        f"| {_size_name(size)} | {'to workers' if to_workers else 'in results'} "
                        f"| {workers} | {transport} | {r['ours']:.0f} | {r['bare']:.0f} "
                        f"| {r['pool']:.0f} | {r['ours'] / r['bare']:.2f} "
                        f"| {r['ours'] / r['pool']:.2f} "
                        f"| {o['distributor']:.0f}/{o['worker']:.0f}/{o['collector']:.0f} "
                        f"| {b['distributor']:.0f}/{b['worker']:.0f}/{b['collector']:.0f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
