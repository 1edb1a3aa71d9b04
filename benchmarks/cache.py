"""What the result cache saves: one pipeline run twice on one cache folder, side by side.

The first run computes every item (``time.sleep(0.01)`` in the worker) and stores its
result; the second, unchanged, finds every item's result fresh: nothing is handed out, the
distributor sends the stored results to the collector itself. Printed per run: seconds
from the first item to the collector's end of run (and the distributor's whole ``run()``),
items/s, the speed-up of the second (target: at least 20x), and the cache file's size on
disk per item. Each item's payload is distinct (``{"i": n, "delay": 0.01}``), and so is
its result (``{"i": n, "square": n * n}``).

    python benchmarks/cache.py --quick     # 1000 items of 10 ms
    python benchmarks/cache.py             # 10 000 items of 10 ms, 2 workers x 10 threads
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from typing import Any, ClassVar

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as h

import zmqpipeline as zp
from zmqpipeline.cache import CacheStore

TASK_TYPE = zp.TaskType.register_type("BENCH_CACHE")
DELAY_S = 0.01


def build(endpoints: h.Endpoints, n_items: int, threads: int, directory: str) -> tuple[Any, ...]:
    class Items(h.BenchTask):
        task_type = TASK_TYPE
        endpoint = zp.EndpointAddress(endpoints.work)
        cache = zp.Cache(directory)
        version = "bench"  # classes defined in a function: name the code's version

        def handle(self, data: dict[str, Any], address: bytes, msgtype: str) -> dict[str, Any]:
            super().handle(data, address, msgtype)
            return {"i": self.handed, "delay": DELAY_S}

    Items.n_items = n_items

    class Worker(zp.MultiThreadedWorker):
        task_type = TASK_TYPE
        endpoint = zp.EndpointAddress(endpoints.work)
        collector_endpoint = zp.EndpointAddress(endpoints.results)
        n_threads = threads

        def handle_execution(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            return data

        def handle_thread_execution(self, data: dict[str, Any], index: int) -> dict[str, Any]:
            time.sleep(data["delay"])
            return {"i": data["i"], "square": data["i"] ** 2}

    class Collector(h.TimingCollector):
        endpoint = zp.EndpointAddress(endpoints.results)
        ack_endpoint = zp.EndpointAddress(endpoints.acks)
        cached: ClassVar[int] = 0

    return Items, Worker, Collector


def one_run(
    transport: str, n_items: int, workers: int, threads: int, directory: str
) -> h.PipelineResult:
    with h.private_endpoints(transport) as endpoints:
        task, worker, collector = build(endpoints, n_items, threads, directory)
        result = h.run_pipeline(task, worker, collector, workers, timeout_s=60 + n_items / 50)
    if result.collected != n_items:
        raise h.BenchmarkError(f"collected {result.collected} of {n_items}")
    return result


def main() -> None:
    parser = h.argument_parser(__doc__)
    parser.add_argument("--transport", choices=["ipc", "tcp"], default="ipc")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=10, help="threads per worker")
    parser.add_argument("--items", type=int, default=None, help="10 ms items (default 10000)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1000 items")
    args = parser.parse_args()
    n_items = args.items or (1000 if args.quick else 10_000)
    directory = tempfile.mkdtemp(prefix="zmqpipeline-cache-bench-")
    try:
        h.print_facts("zmqpipeline result cache benchmark")
        ideal = n_items * DELAY_S / (args.workers * args.threads)
        print(
            f"transport {args.transport}, {args.workers} workers x {args.threads} threads, "
            f"{n_items} items of 10 ms (ideal {ideal:.2f} s)"
        )
        print()
        first = one_run(args.transport, n_items, args.workers, args.threads, directory)
        second = one_run(args.transport, n_items, args.workers, args.threads, directory)
        store = CacheStore(os.path.join(directory, zp.cache.FILE_NAME), 1 << 62, create=False)
        stats = store.stats()
        store.close()
        print("| run | items run by workers | first item -> end | run() | items/s |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, r in (("first (computes, stores)", first), ("second (all cached)", second)):
            print(
                f"| {name} | {sum(r.per_worker)} | {r.dispatch_s:.3f} s | {r.run_s:.3f} s "
                f"| {n_items / r.dispatch_s:,.0f} |"
            )
        print()
        print(
            f"second run {first.dispatch_s / second.dispatch_s:.1f}x faster (first item -> "
            f"end; target >= 20x), {first.run_s / second.run_s:.1f}x by run()"
        )
        print(
            f"cache file {stats['file_bytes'] / 1024:.0f} KiB on disk for {stats['entries']} "
            f"results: {stats['file_bytes'] / stats['entries']:.0f} bytes per item "
            f"({stats['bytes'] / stats['entries']:.0f} counted against max_bytes)"
        )
        cpu = second.cpu_s
        print(
            f"second run CPU: distributor {cpu['distributor']:.2f} s, collector "
            f"{cpu['collector']:.2f} s, workers {cpu['workers']:.2f} s"
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
