"""zmqpipeline.Executor against the standard library's pools and loky, side by side.

Two workloads, each with 2 workers: 100 000 calls of a function that does nothing
(what the machinery costs per call) and 1 000 calls of a function that sleeps 10 ms
(how close to the sequential time divided by the workers). Each pool is started and
warmed up (one small map) before its clock starts, so start-up is not counted; results
come back to the caller in order in every case (``map``).

    python benchmarks/executor.py            # both workloads
    python benchmarks/executor.py --quick    # 10 000 and 200 calls

loky is measured when installed (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

WORKERS = 2
SLEEP_S = 0.01


def noop(x: int) -> int:
    return x


def sleep_10ms(x: int) -> int:
    time.sleep(SLEEP_S)
    return x


def _timed(run: Callable[[], list[Any]], n: int) -> float:
    started = time.perf_counter()
    results = run()
    elapsed = time.perf_counter() - started
    if results != list(range(n)):
        raise AssertionError("results out of order or missing")
    return elapsed


def ours(fn: Callable[[int], int], n: int, chunksize: int) -> float:
    from zmqpipeline import Executor

    with Executor(workers=WORKERS) as ex:
        list(ex.map(fn, range(100)))  # warm: workers joined, functions imported
        return _timed(lambda: list(ex.map(fn, range(n), chunksize=chunksize)), n)


def ppe(fn: Callable[[int], int], n: int, chunksize: int) -> float:
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=context) as ex:
        list(ex.map(fn, range(100)))
        return _timed(lambda: list(ex.map(fn, range(n), chunksize=chunksize)), n)


def loky(fn: Callable[[int], int], n: int, chunksize: int) -> float:
    import loky as _loky  # type: ignore[import-untyped]

    ex = _loky.get_reusable_executor(max_workers=WORKERS)
    list(ex.map(fn, range(100)))
    try:
        return _timed(lambda: list(ex.map(fn, range(n), chunksize=chunksize)), n)
    finally:
        ex.shutdown(wait=True)


def pool_map(fn: Callable[[int], int], n: int, chunksize: int | None) -> float:
    with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
        pool.map(fn, range(100))
        return _timed(lambda: pool.map(fn, range(n), chunksize), n)


def _has_loky() -> bool:
    try:
        import loky as _loky  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


def _rows(fn: Callable[[int], int], n: int, chunks: list[int]) -> Iterator[tuple[str, float]]:
    yield "zmqpipeline.Executor.map chunksize=1", ours(fn, n, 1)
    for c in chunks:
        yield f"zmqpipeline.Executor.map chunksize={c}", ours(fn, n, c)
    yield "ProcessPoolExecutor.map chunksize=1", ppe(fn, n, 1)
    best = min((ppe(fn, n, c), c) for c in chunks)
    yield f"ProcessPoolExecutor.map chunksize={best[1]} (best of {chunks})", best[0]
    if _has_loky():
        yield "loky reusable executor chunksize=1", loky(fn, n, 1)
    else:
        print("  (loky not installed: pip install -e '.[bench]')")
    yield "multiprocessing.Pool.map (its default chunksize)", pool_map(fn, n, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 000 and 200 calls")
    args = parser.parse_args()
    n_noop, n_sleep = (10_000, 200) if args.quick else (100_000, 1_000)
    print(f"{os.cpu_count()} cores, {WORKERS} workers, Python {sys.version.split()[0]}")
    print(f"\n{n_noop} no-op calls")
    base = None
    for name, seconds in _rows(noop, n_noop, [100, 1000]):
        base = base or seconds
        print(f"  {name:58s} {seconds:7.3f} s  {n_noop / seconds:9.0f} calls/s")
    sample = 100
    started = time.perf_counter()
    for i in range(sample):
        sleep_10ms(i)
    sequential = (time.perf_counter() - started) / sample * n_sleep
    ideal = sequential / WORKERS
    print(f"\n{n_sleep} calls of 10 ms; sequential loop {sequential:.3f} s (from {sample} calls),")
    print(f"  divided by {WORKERS} workers: {ideal:.3f} s")
    for name, seconds in _rows(sleep_10ms, n_sleep, [10, 50]):
        print(f"  {name:58s} {seconds:7.3f} s  {100 * (seconds / ideal - 1):+6.2f} % over")


if __name__ == "__main__":
    main()
