"""Throughput of empty items: zmqpipeline against a bare pyzmq pipeline and a process pool.

For 1, 2 and 4 workers, over ipc and tcp, the same run measures:

* zmqpipeline: collector, distributor and N single-threaded workers as separate
  processes; the workers do nothing and return None;
* the bare pyzmq pipeline of benchmarks/_bare.py, same topology and roles (ROUTER ->
  DEALER workers with credit -> PUSH/PULL collector -> ACK back), one item per message,
  msgpack payloads, a credit window per worker of zmqpipeline's largest prefetch
  (``settings.MAX_PREFETCH``, 256; it was 64 until the eighth pass of issue 17, 128
  until the ninth);
* the same bare pipeline "batched", the fastest of that shape we can write (items in
  messages of half a worker's credit, a worker's results for a message in one message
  and its credit in one more, one ACK per results message; _bare.py): the yardstick,
  what is left between it and zmqpipeline is the framework's own cost;
* ``concurrent.futures.ProcessPoolExecutor(N).map(f, items)`` (default chunksize 1), the
  familiar reference (no transport: printed beside both).

Items per second = items / (first item handed out -> collector sees the end of the run),
median of the repeats. zmqpipeline's figure is printed as a ratio to the other two.

    python benchmarks/throughput.py --quick        # 5000 items, once
    python benchmarks/throughput.py                # 50000 items, 3 repeats
    python benchmarks/throughput.py --workers 1 2 --transports ipc --items 100000
    python benchmarks/throughput.py --secure       # adds CURVE over tcp, as a ratio to plain tcp

``--secure`` adds a row per worker count: the same pipeline over tcp with CURVE and ZAP on
(fresh keys, through the ``ZMQPIPELINE_CURVE_*`` variables; benchmarks/secure.py), run
alternately with plain tcp measured the same way, and the ratio of the two.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _bare
import _harness as h

import zmqpipeline as zp
from zmqpipeline.settings import MAX_PREFETCH

TASK_TYPE = zp.TaskType.register_type("BENCH_THROUGHPUT")
#: The batched bare pipeline's credit per worker: its fastest of 256, 512, 1024 and 2048
#: (2 workers over ipc, 2026-12-08: 0.85-0.94, 1.26-1.46, 1.19-1.35, 1.04-1.06 M items/s).
BATCHED_WINDOW = 512


def build(
    endpoints: h.Endpoints, n_items: int, payload: dict[str, Any] | None = None
) -> tuple[Any, Any, Any]:
    class EmptyTask(h.BenchTask):
        task_type = TASK_TYPE
        endpoint = zp.EndpointAddress(endpoints.work)

    EmptyTask.payload = payload or {}

    EmptyTask.n_items = n_items

    EmptyWorker = h.empty_worker(TASK_TYPE, endpoints)

    class Collector(h.TimingCollector):
        endpoint = zp.EndpointAddress(endpoints.results)
        ack_endpoint = zp.EndpointAddress(endpoints.acks)

    return EmptyTask, EmptyWorker, Collector


#: CPU µs per item of each role, per (transport, workers), from the last zmqpipeline run
CPU_US: dict[tuple[str, int], dict[str, list[float]]] = {}


def ours(
    transport: str, n_items: int, n_workers: int, payload: dict[str, Any] | None = None
) -> float:
    with h.private_endpoints(transport) as endpoints:
        task, worker, collector = build(endpoints, n_items, payload)
        result = h.run_pipeline(task, worker, collector, n_workers, timeout_s=20 + n_items / 500)
    if result.collected != n_items or result.failed:
        raise h.BenchmarkError(f"collected {result.collected} of {n_items}, {result.failed} failed")
    cell = CPU_US.setdefault((transport, n_workers), {})
    for role, seconds in result.cpu_s.items():  # whole processes: start-up and end included
        cell.setdefault(role, []).append(seconds / n_items * 1e6)
    return n_items / result.dispatch_s


def bare(
    transport: str,
    n_items: int,
    n_workers: int,
    window: int,
    batched: bool,
    payload: dict[str, Any],
) -> float:
    result = _bare.run_bare(
        transport,
        n_items,
        n_workers,
        window=window,
        batched=batched,
        payload=payload,
        timeout_s=120 + n_items / 500,
    )
    return n_items / result.dispatch_s


def _empty(item: Any) -> None:
    return None


def pool(n_items: int, n_workers: int, chunksize: int, payload: dict[str, Any]) -> float:
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(n_workers, mp_context=ctx) as executor:
        for _ in executor.map(_empty, range(n_workers * 20)):  # every process up and warm
            pass
        started = time.monotonic()
        for _ in executor.map(_empty, (payload for _ in range(n_items)), chunksize=chunksize):
            pass
        return n_items / (time.monotonic() - started)


def fmt(rate: float) -> str:
    return f"{rate:,.0f}"


def main() -> None:
    parser = h.argument_parser(__doc__)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--transports", nargs="+", choices=["ipc", "tcp"], default=["ipc", "tcp"])
    parser.add_argument(
        "--items", type=int, default=None, help="items per run (default 50000; --quick: 5000)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per cell; the median is reported (default 3; --quick: 1)",
    )
    parser.add_argument(
        "--bare-window",
        type=int,
        default=MAX_PREFETCH,
        help=f"credit per worker in the plain bare pipeline (default {MAX_PREFETCH}, "
        "zmqpipeline's largest prefetch)",
    )
    parser.add_argument(
        "--batched-window",
        type=int,
        default=BATCHED_WINDOW,
        help=f"credit per worker in the batched bare pipeline (default {BATCHED_WINDOW}: "
        "its fastest of 256, 512, 1024 and 2048 here)",
    )
    parser.add_argument(
        "--payload",
        type=json.loads,
        default={},
        help="the dict every item carries, as JSON (default {}: empty items), e.g. '{\"n\": 1}'",
    )
    parser.add_argument(
        "--pool-chunksize",
        type=int,
        default=1,
        help="chunksize for ProcessPoolExecutor.map (default 1)",
    )
    parser.add_argument(
        "--secure", action="store_true", help="add CURVE over tcp, as a ratio to plain tcp"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 5000 items, once")
    args = parser.parse_args()
    n_items = args.items or (5000 if args.quick else 50_000)
    repeat = args.repeat or (1 if args.quick else 3)

    what = "items carrying --payload" if args.payload else "empty items"
    h.print_facts(f"zmqpipeline throughput benchmark ({what})")
    print(
        f"items {n_items}, repeat {repeat}, workers {args.workers}, "
        f"transports {' '.join(args.transports)}, bare window {args.bare_window}, "
        f"batched window {args.batched_window}, pool chunksize {args.pool_chunksize}, "
        f"payload {json.dumps(args.payload)}"
    )
    print(
        "items/s = items / (first item handed out -> end of run seen by the collector); "
        "median [min..max]"
    )
    print(flush=True)

    samples: dict[tuple[str, str, int], list[float]] = {}
    for rep in range(repeat):  # interleaved, so load elsewhere spreads over every cell
        for n_workers in args.workers:
            for transport in args.transports:
                for kind in ("zmqpipeline", "bare", "batched"):
                    if kind == "zmqpipeline":
                        rate = ours(transport, n_items, n_workers, args.payload)
                    else:
                        batched = kind == "batched"
                        window = args.batched_window if batched else args.bare_window
                        rate = bare(transport, n_items, n_workers, window, batched, args.payload)
                    samples.setdefault((kind, transport, n_workers), []).append(rate)
                    print(
                        f"  [run {rep + 1}/{repeat}] {kind:<11} {transport} {n_workers} "
                        f"worker(s): {fmt(rate)} items/s",
                        file=sys.stderr,
                        flush=True,
                    )
            rate = pool(n_items, n_workers, args.pool_chunksize, args.payload)
            samples.setdefault(("pool", "-", n_workers), []).append(rate)
            print(
                f"  [run {rep + 1}/{repeat}] ProcessPoolExecutor {n_workers} worker(s): "
                f"{fmt(rate)} items/s",
                file=sys.stderr,
                flush=True,
            )

    header = (
        f"{'transport':<9} {'workers':>7} {'zmqpipeline/s':>13} {'[min..max]':>17} "
        f"{'bare pyzmq/s':>12} {'ratio':>6} {'bare batched/s':>14} {'ratio':>6} "
        f"{'ProcessPool/s':>13} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    verdicts = []
    for transport in args.transports:
        for n_workers in args.workers:
            z, z_lo, z_hi = h.spread(samples[("zmqpipeline", transport, n_workers)])
            b = h.spread(samples[("bare", transport, n_workers)])[0]
            bb = h.spread(samples[("batched", transport, n_workers)])[0]
            p = h.spread(samples[("pool", "-", n_workers)])[0]
            verdicts.append((transport, n_workers, z / bb, z / b, z / p))
            print(
                f"{transport:<9} {n_workers:>7} {fmt(z):>13} "
                f"{f'[{fmt(z_lo)}..{fmt(z_hi)}]':>17} {fmt(b):>12} {z / b:>6.2f} "
                f"{fmt(bb):>14} {z / bb:>6.2f} {fmt(p):>13} {z / p:>6.2f}"
            )
    print()
    print("CPU per item of zmqpipeline's roles (user + system, each whole process; median), us:")
    print(f"{'transport':<9} {'workers':>7} {'distributor':>11} {'collector':>9} {'workers':>8}")
    for transport in args.transports:
        for n_workers in args.workers:
            cpu = {role: h.spread(v)[0] for role, v in CPU_US[(transport, n_workers)].items()}
            print(
                f"{transport:<9} {n_workers:>7} {cpu['distributor']:>11.1f} "
                f"{cpu['collector']:>9.1f} {cpu['workers']:>8.1f}"
            )
    print("(workers: all worker processes together)")
    print()
    print("ratio: zmqpipeline items/s divided by the column to its left")
    print(
        "targets: >= 0.50 x the batched bare pipeline, aiming for 0.60 (what is left is the "
        "framework's own cost); and, an older one, >= 0.50 x the plain bare pipeline and "
        "ahead of ProcessPoolExecutor"
    )
    print()
    met = 0
    for transport, n_workers, vs_batched, vs_bare, vs_pool in verdicts:
        ok = vs_batched >= 0.5 and vs_bare >= 0.5 and vs_pool > 1.0
        met += ok
        aim = "aim met" if vs_batched >= 0.6 else "aim missed"
        print(
            f"target: {transport} {n_workers} worker(s): {vs_batched:.2f} x batched ({aim}), "
            f"{vs_bare:.2f} x bare, {vs_pool:.2f} x pool  {'met' if ok else 'MISSED'}"
        )
    print(f"{met}/{len(verdicts)} cells within target")
    if args.secure:
        secure_rows(args.workers, n_items, repeat)


def secure_rows(workers: list[int], n_items: int, repeat: int) -> None:
    """CURVE against plain tcp, the two alternating; items / RunReport.wall_time_s."""
    import secure

    rates: dict[tuple[bool, int], list[float]] = {}
    for _ in range(repeat):
        for n_workers in workers:
            for curve in (False, True):
                rate = secure.measure(n_items, n_workers, curve)
                rates.setdefault((curve, n_workers), []).append(rate)
    print()
    print(
        f"{'secure':<9} {'workers':>7} {'plain tcp/s':>12} {'CURVE tcp/s':>12} {'CURVE/plain':>11}"
    )
    for n_workers in workers:
        plain = h.spread(rates[(False, n_workers)])[0]
        curve = h.spread(rates[(True, n_workers)])[0]
        print(f"{'tcp':<9} {n_workers:>7} {fmt(plain):>12} {fmt(curve):>12} {curve / plain:>11.2f}")
    print("(items / the distributor's RunReport.wall_time_s, median; see benchmarks/secure.py)")


if __name__ == "__main__":
    main()
