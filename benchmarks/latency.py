"""Round-trip latency of one item through the whole pipeline, against bare pyzmq.

One item at a time: dispatch -> worker -> collector -> ACK back at the distributor, and
only then the next item. zmqpipeline is held to one item at a time by its own API: the
task's ``is_available_for_handling(last_ack_data)`` returns False until the ACK of the
item it handed out last has come back (the collector returns its running count from
``handle_collection``, which rides on the ACK). The round trip is timed inside the
distributor process, from ``Task.handle()`` handing the item out to the
``is_available_for_handling`` call that sees its ACK. The distributor's own figure,
``RunReport.latency_ms`` (handed out -> ACK read, per item), is printed beside it.

The bare pyzmq pipeline of benchmarks/_bare.py does the same with credit 1 and the next
item sent only once the previous ACK is in, timed from send to ACK received.

One worker (SingleThreadedWorker, empty items), collector and distributor in separate
processes; the first 10 round trips of each run are left out as warm-up.

Runs are many and short, zmqpipeline's and bare's alternated: on this kind of machine (a
small VM) a wake-up of a sleeping process costs tens of microseconds and drifts by a
quarter from one run to the next, so three long runs each could put the two pipelines in
different weather. The ratio is given on the pooled samples and as the median of the
runs' own ratios.

    python benchmarks/latency.py --quick           # 300 items, once
    python benchmarks/latency.py                   # 10 x 600 items, alternated, ipc and tcp
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any, ClassVar

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _bare
import _harness as h

import zmqpipeline as zp

TASK_TYPE = zp.TaskType.register_type("BENCH_LATENCY")
WARMUP = 10
TARGET = 1.5  # median round trip, against bare pyzmq


def build(endpoints: h.Endpoints, n_items: int) -> tuple[Any, Any, Any]:
    class OneAtATimeTask(h.BenchTask):
        task_type = TASK_TYPE
        endpoint = zp.EndpointAddress(endpoints.work)
        payload: ClassVar[dict[str, Any]] = {}

        def __init__(self) -> None:
            super().__init__()
            self.sent_at = 0.0
            self.round_trips: list[float] = []

        def is_available_for_handling(self, last_ack_data: dict[str, Any] | None) -> bool:
            if self.handed == 0:
                return True
            if not last_ack_data or last_ack_data.get("n") != self.handed:
                return False  # the last item's ACK is not back yet
            if len(self.round_trips) < self.handed:
                self.round_trips.append(time.perf_counter() - self.sent_at)
            return True

        def handle(self, data: dict[str, Any], address: bytes, msgtype: str) -> dict[str, Any]:
            payload = super().handle(data, address, msgtype)
            self.sent_at = time.perf_counter()
            return payload

        def stats(self) -> dict[str, Any]:
            return {"round_trips": self.round_trips}

    OneAtATimeTask.n_items = n_items

    EmptyWorker = h.empty_worker(TASK_TYPE, endpoints)

    class CountingCollector(h.TimingCollector):
        endpoint = zp.EndpointAddress(endpoints.results)
        ack_endpoint = zp.EndpointAddress(endpoints.acks)

        def handle_collection(
            self, data: dict[str, Any], task_type: str, msgtype: str
        ) -> dict[str, Any]:
            super().handle_collection(data, task_type, msgtype)
            return {"n": self.count}

    return OneAtATimeTask, EmptyWorker, CountingCollector


def ours(transport: str, n_items: int) -> tuple[list[float], dict[str, float]]:
    with h.private_endpoints(transport) as endpoints:
        task, worker, collector = build(endpoints, n_items)
        result = h.run_pipeline(task, worker, collector, 1, timeout_s=120 + n_items * 0.05)
    if result.collected != n_items or result.failed:
        raise h.BenchmarkError(f"collected {result.collected} of {n_items}, {result.failed} failed")
    return result.task_stats["round_trips"][WARMUP:], result.latency_ms


def bare(transport: str, n_items: int) -> list[float]:
    result = _bare.run_bare(
        transport, n_items + 1, 1, one_at_a_time=True, timeout_s=120 + n_items * 0.05
    )
    round_trips: list[float] = result.task_stats["round_trips"]
    return round_trips[WARMUP:n_items]


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f}"


def main() -> None:
    parser = h.argument_parser(__doc__)
    parser.add_argument(
        "--items", type=int, default=None, help="items per run (default 600; --quick: 300)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per transport and pipeline, alternated; samples are pooled "
        "(default 10; --quick: 1)",
    )
    parser.add_argument("--transports", nargs="+", choices=["ipc", "tcp"], default=["ipc", "tcp"])
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 items, once")
    args = parser.parse_args()
    n_items = args.items or (300 if args.quick else 600)
    repeat = args.repeat or (1 if args.quick else 10)
    if n_items <= WARMUP:
        parser.error(f"--items must be more than the {WARMUP} warm-up items")

    h.print_facts("zmqpipeline latency benchmark (one empty item at a time, 1 worker)")
    print(
        f"items {n_items} per run ({WARMUP} warm-up left out), repeat {repeat}, "
        f"transports {' '.join(args.transports)}"
    )
    print(
        "round trip = item handed out -> its ACK back at the distributor; "
        "samples of all runs pooled"
    )
    print(flush=True)

    pooled: dict[tuple[str, str], list[float]] = {}
    run_medians: dict[tuple[str, str], list[float]] = {}
    reports: dict[str, list[dict[str, float]]] = {}
    for rep in range(repeat):
        for transport in args.transports:
            samples, report = ours(transport, n_items)
            reports.setdefault(transport, []).append(report)
            pooled.setdefault(("zmqpipeline", transport), []).extend(samples)
            run_medians.setdefault(("zmqpipeline", transport), []).append(
                statistics.median(samples)
            )
            bare_samples = bare(transport, n_items)
            pooled.setdefault(("bare", transport), []).extend(bare_samples)
            run_medians.setdefault(("bare", transport), []).append(statistics.median(bare_samples))
            print(
                f"  [run {rep + 1}/{repeat}] {transport}: zmqpipeline median "
                f"{us(statistics.median(samples))} us, bare {us(statistics.median(bare_samples))}"
                f" us",
                file=sys.stderr,
                flush=True,
            )

    header = (
        f"{'transport':<9} {'pipeline':<12} {'samples':>7} {'median us':>9} "
        f"{'p90 us':>7} {'p99 us':>7} {'max us':>8} {'run medians us':>16} "
        f"{'RunReport p50/p99 ms':>21}"
    )
    print(header)
    print("-" * len(header))
    verdicts = []
    for transport in args.transports:
        for kind in ("zmqpipeline", "bare"):
            values = pooled[(kind, transport)]
            medians = run_medians[(kind, transport)]
            extra = ""
            if kind == "zmqpipeline":
                p50 = statistics.median(r["p50"] for r in reports[transport])
                p99 = statistics.median(r["p99"] for r in reports[transport])
                extra = f"{p50:.3f} / {p99:.3f}"
            print(
                f"{transport:<9} {kind:<12} {len(values):>7} "
                f"{us(statistics.median(values)):>9} {us(h.percentile(values, 0.9)):>7} "
                f"{us(h.percentile(values, 0.99)):>7} {us(max(values)):>8} "
                f"{us(min(medians)) + ' - ' + us(max(medians)):>16} {extra:>21}"
            )
        ours_med = statistics.median(pooled[("zmqpipeline", transport)])
        bare_med = statistics.median(pooled[("bare", transport)])
        ours_p99 = h.percentile(pooled[("zmqpipeline", transport)], 0.99)
        bare_p99 = h.percentile(pooled[("bare", transport)], 0.99)
        run_ratios = [
            o / b
            for o, b in zip(
                run_medians[("zmqpipeline", transport)],
                run_medians[("bare", transport)],
                strict=True,
            )
        ]
        verdicts.append((transport, ours_med / bare_med, ours_p99 / bare_p99, run_ratios))
        print(
            f"{'':<9} {'ratio':<12} {'':>7} {ours_med / bare_med:>9.2f} {'':>7} "
            f"{ours_p99 / bare_p99:>7.2f}   runs' own ratios {min(run_ratios):.2f} - "
            f"{max(run_ratios):.2f}, median {statistics.median(run_ratios):.2f}"
        )
    print()
    print(
        "ratio: zmqpipeline / bare pyzmq (pooled samples; and each run's median against the "
        "bare run beside it). RunReport p50/p99: the distributor's own latency figures for "
        "the same runs (median over runs; they include the warm-up items)"
    )
    print()
    met = 0
    for transport, median_ratio, p99_ratio, run_ratios in verdicts:
        ok = median_ratio <= TARGET
        met += ok
        print(
            f"target (median within {TARGET}x of bare pyzmq): {transport}: {median_ratio:.2f}x "
            f"(p99 {p99_ratio:.2f}x; runs' own {statistics.median(run_ratios):.2f}x)  "
            f"{'met' if ok else 'MISSED'}"
        )
    print(f"{met}/{len(verdicts)} transports within target")


if __name__ == "__main__":
    main()
