"""Peak memory of the distributor and the collector against the number of items.

Both must keep state for the items in flight only (SPEC §3.7), so their peak RSS should
stay flat from 10 thousand to 1 million items. Each role runs in its own process and
reports ``ru_maxrss`` when its ``run()`` returns.

    python benchmarks/memory.py                 # 10k, 100k, 1M empty items, 2 workers
    python benchmarks/memory.py --counts 10000 100000
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import zmqpipeline as zp

zp.TaskType.register_type("EMPTY")


def build(directory: str, n_items: int):
    class EmptyTask(zp.Task):
        task_type = zp.TaskType("EMPTY")
        endpoint = zp.EndpointAddress(f"ipc://{directory}/work.ipc")

        def __init__(self):
            super().__init__()
            self.n = 0

        def handle(self, data, address, msgtype):
            self.n += 1
            if self.n >= n_items:
                self.is_complete = True
            return None

    class EmptyWorker(zp.SingleThreadedWorker):
        task_type = zp.TaskType("EMPTY")
        endpoint = EmptyTask.endpoint
        collector_endpoint = zp.EndpointAddress(f"ipc://{directory}/results.ipc")

        def handle_execution(self, data, *args, **kwargs):
            return None

    class CountingCollector(zp.Collector):
        endpoint = EmptyWorker.collector_endpoint
        ack_endpoint = zp.EndpointAddress(f"ipc://{directory}/acks.ipc")
        count = 0

        def handle_collection(self, data, task_type, msgtype):
            self.count += 1

    return EmptyTask, EmptyWorker, CountingCollector


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(n_items: int, n_workers: int) -> dict[str, float]:
    directory = tempfile.mkdtemp(prefix="zmqpipeline-mem-")
    task, worker, collector = build(directory, n_items)
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()

    def run_collector():
        c = collector()
        c.run()
        results.put(("collector", _peak_mib(), c.count))

    def run_distributor():
        report = zp.Distributor(collector.endpoint, collector.ack_endpoint, tasks=[task]).run()
        results.put(("distributor", _peak_mib(), report.total))

    processes = [ctx.Process(target=run_collector)]
    processes += [ctx.Process(target=lambda: worker().run()) for _ in range(n_workers)]
    processes.append(ctx.Process(target=run_distributor))
    started = time.monotonic()
    try:
        for process in processes:
            process.start()
        out = {}
        for _ in range(2):
            role, peak, count = results.get(timeout=600)
            if count != n_items:
                raise SystemExit(f"{role} saw {count} items, expected {n_items}")
            out[role] = peak
        out["seconds"] = time.monotonic() - started
        return out
    finally:
        for process in processes:
            process.join(10)
            if process.exitcode is None:
                os.kill(process.pid, 9)
                process.join()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"{'items':>10} {'distributor MiB':>16} {'collector MiB':>14} {'seconds':>8}")
    for n in args.counts:
        row = measure(n, args.workers)
        print(
            f"{n:>10} {row['distributor']:>16.1f} {row['collector']:>14.1f} {row['seconds']:>8.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
