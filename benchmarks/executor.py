"""zmqpipeline.Executor against the standard library's pools and loky, side by side.

Two workloads, each with 2 workers: 100 000 calls of a function that does nothing
(what the machinery costs per call) and 1 000 calls of a function that sleeps 10 ms
(how close to the sequential time divided by the workers).

Start-up: each pool is started and warmed before its rows' clocks start (ours: until
both workers have run a call; the pools: one small map), so a row is the time of the
calls on a started pool. Start-up is timed on its own and printed (ours: from
``Executor(workers=2)`` until both workers have answered), and one row of the 10 ms
workload counts it: a fresh executor, from its constructor to the last result. Results
come back to the caller in order in every row (``map``, or the futures of a ``submit``
loop read in order).

The no-op rows of ours and of ``ProcessPoolExecutor`` at its chunksizes 100 and 1000
run ``--repeat`` times, alternately, and print their median: the ratio of ours to its
best chunksize is read from the same run. The 10 ms rows run ``--repeat-slow`` rounds
(every row once a round) and print their median; the sequential loop is sampled before,
between and after the rounds (the machine's load moves it), their mean the baseline.

    python benchmarks/executor.py            # both workloads
    python benchmarks/executor.py --quick    # 10 000 and 200 calls, 100 sampled
    python benchmarks/executor.py --repeat-slow 3   # the figures in RESULTS.md

loky is measured when installed (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

WORKERS = 2
SLEEP_S = 0.01
Run = Callable[[], list[Any]]


def noop(x: int) -> int:
    return x


def sleep_10ms(x: int) -> int:
    time.sleep(SLEEP_S)
    return x


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _timed(run: Run, n: int) -> float:
    started = time.perf_counter()
    results = run()
    elapsed = time.perf_counter() - started
    if results != list(range(n)):
        raise AssertionError("results out of order or missing")
    return elapsed


class Pools:
    """Every pool of the run, started once and warmed (see the module's text)."""

    def __init__(self) -> None:
        from zmqpipeline import Executor

        context = multiprocessing.get_context("fork")
        started = time.perf_counter()
        self.ppe = concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=context)
        list(self.ppe.map(noop, range(100)))
        ppe_s = time.perf_counter() - started
        self.pool = context.Pool(WORKERS)
        self.pool.map(noop, range(100))
        self.loky: Any = None
        if _has_loky():
            import loky as _loky  # type: ignore[import-untyped]

            self.loky = _loky.get_reusable_executor(max_workers=WORKERS)
            list(self.loky.map(noop, range(100)))
        else:
            print("  (loky not installed: pip install -e '.[bench]')")
        started = time.perf_counter()
        self.ours = Executor(workers=WORKERS)
        while len(set(self.ours.map(pid_after, [0.001] * 4 * WORKERS))) < WORKERS:
            pass
        ours_s = time.perf_counter() - started
        print(f"start-up: Executor(workers=2) until both workers answered {ours_s:.3f} s; ")
        print(f"  ProcessPoolExecutor(2) (fork) and one small map {ppe_s:.3f} s")

    def ours_rows(self, fn: Callable[[int], int], n: int, chunks: list[int]) -> dict[str, Run]:
        ex = self.ours
        rows: dict[str, Run] = {
            "Executor.map chunksize=1 (adaptive batches)": lambda: list(ex.map(fn, range(n)))
        }
        for c in chunks:
            rows[f"Executor.map chunksize={c}"] = _mapped(ex, fn, n, c)
        rows["Executor.submit in a loop"] = lambda: [
            fu.result() for fu in [ex.submit(fn, i) for i in range(n)]
        ]
        return rows

    def ppe_rows(self, fn: Callable[[int], int], n: int, chunks: list[int]) -> dict[str, Run]:
        ex = self.ppe
        return {f"ProcessPoolExecutor.map chunksize={c}": _mapped(ex, fn, n, c) for c in chunks}

    def other_rows(self, fn: Callable[[int], int], n: int) -> dict[str, Run]:
        rows: dict[str, Run] = {}
        if self.loky is not None:
            lex = self.loky
            rows["loky reusable executor chunksize=1"] = lambda: list(lex.map(fn, range(n)))
        pool = self.pool
        rows["multiprocessing.Pool.map (its default chunksize)"] = lambda: pool.map(fn, range(n))
        return rows

    def close(self) -> None:
        self.ours.shutdown()
        self.ppe.shutdown()
        self.pool.close()
        if self.loky is not None:
            self.loky.shutdown()


def _mapped(ex: Any, fn: Callable[[int], int], n: int, chunksize: int) -> Run:
    return lambda: list(ex.map(fn, range(n), chunksize=chunksize))


def fresh_ours(fn: Callable[[int], int], n: int) -> float:
    """A fresh executor's map, start-up counted: constructor to the last result."""
    from zmqpipeline import Executor

    started = time.perf_counter()
    with Executor(workers=WORKERS) as ex:
        results = list(ex.map(fn, range(n)))
        elapsed = time.perf_counter() - started
    if results != list(range(n)):
        raise AssertionError("results out of order or missing")
    return elapsed


def _has_loky() -> bool:
    try:
        import loky as _loky  # noqa: F401
    except ImportError:
        return False
    return True


def no_ops(pools: Pools, n: int, repeat: int) -> None:
    print(f"\n{n} no-op calls (median of {repeat} for ours and ProcessPoolExecutor)")
    alternated = {**pools.ours_rows(noop, n, [100, 1000]), **pools.ppe_rows(noop, n, [100, 1000])}
    times: dict[str, list[float]] = {name: [] for name in alternated}
    for _ in range(repeat):
        for name, run in alternated.items():
            times[name].append(_timed(run, n))
    once = {**pools.ppe_rows(noop, n, [1]), **pools.other_rows(noop, n)}
    for name, run in once.items():
        times[name] = [_timed(run, n)]
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, seconds in medians.items():
        print(f"  {name:52s} {seconds:7.3f} s  {n / seconds:10.0f} calls/s")
    best_name = min((k for k in medians if k.startswith("ProcessPool")), key=medians.__getitem__)
    ppe1 = medians["ProcessPoolExecutor.map chunksize=1"]
    print(f"  ProcessPoolExecutor at its best: {best_name.split()[-1]}")
    for name in [k for k in medians if k.startswith("Executor.")]:
        print(
            f"  {name:52s} {medians[best_name] / medians[name]:5.2f}x its best, "
            f"{ppe1 / medians[name]:7.1f}x its chunksize 1"
        )


def _sequential(sample: int, n: int) -> float:
    started = time.perf_counter()
    for i in range(sample):
        sleep_10ms(i)
    return (time.perf_counter() - started) / sample * n


def ten_ms(pools: Pools, n: int, sample: int, repeat: int) -> None:
    rows = {
        **pools.ours_rows(sleep_10ms, n, [10, 50]),
        **pools.ppe_rows(sleep_10ms, n, [1, 10, 50]),
    }
    rows.update(pools.other_rows(sleep_10ms, n))
    times: dict[str, list[float]] = {name: [] for name in rows}
    fresh = "Executor.map, fresh executor (start-up counted)"
    times[fresh] = []
    sequential = [_sequential(sample, n)]
    for _ in range(repeat):  # every row once a round; the baseline sampled between rounds
        for name, run in rows.items():
            times[name].append(_timed(run, n))
        times[fresh].append(fresh_ours(sleep_10ms, n))
        sequential.append(_sequential(sample, n))
    ideal = statistics.mean(sequential) / WORKERS
    print(
        f"\n{n} calls of 10 ms (median of {repeat}); sequential loop "
        f"{', '.join(f'{s:.3f}' for s in sequential)} s (from {sample} calls each, before, "
        f"between and after the rounds),\n  their mean divided by {WORKERS} workers: "
        f"{ideal:.3f} s"
    )
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"  {name:52s} {median:7.3f} s  {100 * (median / ideal - 1):+6.2f} % over")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 000 and 200 calls")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the no-op rows (3)")
    parser.add_argument("--repeat-slow", type=int, default=1, help="rounds of the 10 ms rows (1)")
    args = parser.parse_args()
    n_noop, n_sleep, sample = (10_000, 200, 100) if args.quick else (100_000, 1_000, 200)
    print(f"{os.cpu_count()} cores, {WORKERS} workers, Python {sys.version.split()[0]}")
    pools = Pools()
    try:
        no_ops(pools, n_noop, args.repeat)
        ten_ms(pools, n_sleep, sample, args.repeat_slow)
    finally:
        pools.close()


if __name__ == "__main__":
    main()
