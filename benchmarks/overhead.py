"""Overhead of zmqpipeline on 10 ms items: the original tutorial's table, reproduced.

Rows: the sequential loop (``time.sleep(0.01)`` n times in this process); 1 and 2
single-threaded workers; 1 and 2 workers with 10 threads each; for 100, 1000 and 5000
items. Every pipeline row runs collector, distributor and workers as separate processes.

Optional rows (``--rows``): the bare pyzmq pipeline of benchmarks/_bare.py, plain
(``bare1w bare2w``) and coalescing results and credit (``bare1wc bare2wc``, ``--linger``);
and the standard library with 1 and 2 processes: ``ProcessPoolExecutor.submit`` per item
(``ppe1 ppe2``), ``multiprocessing.Pool.apply_async`` per item (``apply1 apply2``) and
``Pool.map`` with its default chunksize (``map1 map2``). A pool is started and warmed
before its clock starts (first submission -> last result).

Each row prints its wall time (median of the repeats, with min..max), the ideal
(items x 10 ms / parallelism) and two overheads:

* against the ideal, as the original did (``time.sleep(0.01)`` alone overshoots by a few
  per cent, so this can never reach 0);
* against the sequential loop measured in the same invocation, divided by the
  parallelism: the cost of the pipeline itself.

The wall time is "first item handed out -> collector's handle_finished" (see
benchmarks/_harness.py); the tutorial's stopwatch (first collection -> handle_finished)
and the distributor's whole run() are printed beside it.

    python benchmarks/overhead.py --quick                  # 100 items, once: a smoke run
    python benchmarks/overhead.py                          # the full table, 3 repeats
    python benchmarks/overhead.py --items 100 1000 --rows 1w 2w --repeat 5 --transport tcp
    python benchmarks/overhead.py --quick --rows 1w ppe1 apply1 map1 bare1w bare1wc
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, ClassVar

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _bare
import _harness as h

import zmqpipeline as zp

DELAY_S = 0.01
TASK_TYPE = zp.TaskType.register_type("BENCH_OVERHEAD")

#: row name -> (label, workers, threads per worker or 0 for SingleThreadedWorker)
ROWS: dict[str, tuple[str, int, int]] = {
    "seq": ("sequential loop", 0, 0),
    "1w": ("1 worker", 1, 0),
    "2w": ("2 workers", 2, 0),
    "1x10": ("1 worker x 10 threads", 1, 10),
    "2x10": ("2 workers x 10 threads", 2, 10),
    # Not in the original: the bare pyzmq pipeline of _bare.py with the same 10 ms items
    # (credit 2 per worker, as zmqpipeline gives a single-threaded worker): the floor
    # this machine allows any process-per-role pipeline.
    "bare1w": ("bare pyzmq, 1 worker", 1, 0),
    "bare2w": ("bare pyzmq, 2 workers", 2, 0),
    # The bare pipeline, coalesced: each worker holds results and credit until the oldest
    # held result is --linger old or nothing is queued for it, then sends them at once.
    "bare1wc": ("bare coalesced, 1 worker", 1, 0),
    "bare2wc": ("bare coalesced, 2 workers", 2, 0),
    # The standard library, 1 and 2 processes (h.run_stdlib_pool): "workers" is processes.
    "ppe1": ("PPE.submit, 1 process", 1, 0),
    "ppe2": ("PPE.submit, 2 processes", 2, 0),
    "apply1": ("Pool.apply_async, 1 proc", 1, 0),
    "apply2": ("Pool.apply_async, 2 procs", 2, 0),
    "map1": ("Pool.map, 1 process", 1, 0),
    "map2": ("Pool.map, 2 processes", 2, 0),
}
DEFAULT_ROWS = ["seq", "1w", "2w", "1x10", "2x10"]
#: zmqpipeline's own rows: the only ones the "vs seq" target applies to.
OURS = ("1w", "2w", "1x10", "2x10")
LABEL_W = 26  # the widest label above

#: The original's published overhead (%), 2014, 4-core i7, Python 2.7 (tutorial, examples
#: 2 and 3). Its "2 workers, 1000 tasks: 550 milliseconds" is a typo for ~5500 (10 %).
ORIGINAL: dict[str, dict[int, float]] = {
    "seq": {100: 1.2, 1000: 1.1, 5000: 1.0},
    "1w": {100: 6.0, 1000: 8.5, 5000: 7.8},
    "2w": {100: 5.4, 1000: 10.0, 5000: 7.6},
    "1x10": {100: -7.0, 1000: 7.0, 5000: 8.6},
    "2x10": {100: 2.0, 1000: 12.0, 5000: 12.7},
}


def parallelism(row: str) -> int:
    _, workers, threads = ROWS[row]
    return max(1, workers) * max(1, threads)


def build(endpoints: h.Endpoints, n_items: int, threads: int) -> tuple[Any, Any, Any]:
    class SleepTask(h.BenchTask):
        task_type = TASK_TYPE
        endpoint = zp.EndpointAddress(endpoints.work)
        payload: ClassVar[dict[str, Any]] = {"workload": DELAY_S}

    SleepTask.n_items = n_items

    if threads:

        class Worker(zp.MultiThreadedWorker):
            task_type = TASK_TYPE
            endpoint = zp.EndpointAddress(endpoints.work)
            collector_endpoint = zp.EndpointAddress(endpoints.results)
            n_threads = threads

            def handle_execution(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
                return data

            def handle_thread_execution(self, data: dict[str, Any], index: int) -> None:
                time.sleep(data["workload"])

    else:

        class Worker(zp.SingleThreadedWorker):  # type: ignore[no-redef]
            task_type = TASK_TYPE
            endpoint = zp.EndpointAddress(endpoints.work)
            collector_endpoint = zp.EndpointAddress(endpoints.results)

            def handle_execution(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
                time.sleep(data["workload"])

    class Collector(h.TimingCollector):
        endpoint = zp.EndpointAddress(endpoints.results)
        ack_endpoint = zp.EndpointAddress(endpoints.acks)

    return SleepTask, Worker, Collector


def run_row(
    row: str,
    n_items: int,
    transport: str,
    settings: zp.Settings | None = None,
    linger: float = 0.05,
) -> dict[str, Any]:
    if row == "seq":
        seconds = h.sequential_loop(n_items, DELAY_S)
        return {"wall": seconds, "collector": seconds, "run": seconds, "split": ""}
    _, workers, threads = ROWS[row]
    pool = row.rstrip("0123456789")
    if pool in h.STDLIB_POOLS:
        seconds, split = h.run_stdlib_pool(pool, n_items, workers, DELAY_S)
        return {
            "wall": seconds,
            "collector": seconds,
            "run": seconds,
            "split": "/".join(map(str, split)),
        }
    if row.startswith("bare"):
        result = _bare.run_bare(
            transport,
            n_items,
            workers,
            window=2,
            delay_s=DELAY_S,
            linger=linger if row.endswith("wc") else None,
            timeout_s=60 + n_items * 0.05,
        )
        return {
            "wall": result.dispatch_s,
            "collector": result.collector_s,
            "run": result.run_s,
            "split": "/".join(map(str, result.per_worker)),
        }
    with h.private_endpoints(transport) as endpoints:
        task, worker, collector = build(endpoints, n_items, threads)
        result = h.run_pipeline(
            task, worker, collector, workers, settings=settings, timeout_s=60 + n_items * 0.05
        )
    if result.collected != n_items or result.failed:
        raise h.BenchmarkError(
            f"{row}/{n_items}: collected {result.collected}, failed {result.failed}"
        )
    return {
        "wall": result.dispatch_s,
        "collector": result.collector_s,
        "run": result.run_s,
        "split": "/".join(map(str, result.per_worker)),
    }


def target(row: str, items: int) -> float | None:
    """The issue's targets against the loop: under 1 % at 1000+ items (2 % for 2 x 10
    threads), under 3 % at 100 items for 1 and 2 workers, under 10 % for 2 x 10 threads
    at 100 items (the fair tail's); none for other rows."""
    if row not in OURS:
        return None
    if items >= 1000:
        return 0.02 if row == "2x10" else 0.01
    return {"1w": 0.03, "2w": 0.03, "2x10": 0.10}.get(row)


def pct(value: float) -> str:
    return f"{value * 100:+.1f}%"


def main() -> None:
    parser = h.argument_parser(__doc__)
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=list(ROWS),
        default=DEFAULT_ROWS,
        help="rows to run (default: the original's five); seq is always run "
        "as the baseline; bare1w/bare2w add the bare pyzmq pipeline, bare1wc/bare2wc "
        "the same coalesced; ppe1/ppe2, apply1/apply2, map1/map2 the standard library",
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=0.05,
        help="bare1wc/bare2wc: send held results once the oldest is this old, in seconds "
        "(or when nothing is queued; default 0.05)",
    )
    parser.add_argument(
        "--items",
        nargs="+",
        type=int,
        default=None,
        help="item counts (default: 100 1000 5000; --quick: 100)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per row; the median is reported (default 3; --quick: 1)",
    )
    parser.add_argument("--transport", choices=["ipc", "tcp"], default="ipc")
    parser.add_argument(
        "--prefetch",
        type=int,
        default=None,
        help="Settings.prefetch for every role (default: the package default)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 items, once, no chart")
    parser.add_argument(
        "--chart",
        default=None,
        metavar="PNG",
        help="write the chart here (default: benchmarks/overhead.png, "
        "none with --quick); needs matplotlib, skipped without it",
    )
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="also write every measurement as JSON")
    args = parser.parse_args()

    items = args.items or ([100] if args.quick else [100, 1000, 5000])
    repeat = args.repeat or (1 if args.quick else 3)
    rows = ["seq"] + [r for r in ROWS if r in args.rows and r != "seq"]
    default_chart = os.path.join(os.path.dirname(os.path.abspath(__file__)), "overhead.png")
    chart = None if args.no_chart else (args.chart or (None if args.quick else default_chart))

    settings = None if args.prefetch is None else zp.Settings.from_env(prefetch=args.prefetch)
    h.print_facts("zmqpipeline overhead benchmark (10 ms items)")
    print(
        f"transport {args.transport}, items {items}, repeat {repeat}, rows {' '.join(rows)}"
        + ("" if settings is None else f", prefetch {args.prefetch}")
        + (f", linger {args.linger} s" if any(r.endswith("wc") for r in rows) else "")
    )
    print(
        "wall = first item handed out -> collector handle_finished; "
        "median [min..max] of the repeats"
    )
    print(flush=True)

    measured: dict[str, dict[int, list[dict[str, Any]]]] = {r: {} for r in rows}
    # Interleave the repeats (all rows once, then again) so a burst of load elsewhere on the
    # machine spreads over rows instead of landing on one.
    for n in items:
        for rep in range(repeat):
            for row in rows:
                sample = run_row(row, n, args.transport, settings, args.linger)
                measured[row].setdefault(n, []).append(sample)
                print(
                    f"  [{n} items, run {rep + 1}/{repeat}] {ROWS[row][0]:<{LABEL_W}} "
                    f"{sample['wall'] * 1000:9.1f} ms  {sample['split']}",
                    file=sys.stderr,
                    flush=True,
                )

    header = (
        f"{'row':<{LABEL_W}} {'items':>5} {'ideal ms':>9} {'seq/par ms':>10} {'wall ms':>9} "
        f"{'[min..max]':>17} {'vs ideal':>8} {'vs seq':>7} {'orig':>6} "
        f"{'tutorial ms':>11} {'vs ideal':>8} {'run() s':>7}  split"
    )
    print(header)
    print("-" * len(header))
    table: list[dict[str, Any]] = []
    for n in items:
        seq_med = h.spread([s["wall"] for s in measured["seq"][n]])[0]
        for row in rows:
            samples = measured[row][n]
            par = parallelism(row)
            ideal = n * DELAY_S / par
            seq_base = seq_med / par
            wall, lo, hi = h.spread([s["wall"] for s in samples])
            tut = h.spread([s["collector"] for s in samples])[0]
            run = h.spread([s["run"] for s in samples])[0]
            entry = {
                "row": row,
                "items": n,
                "parallelism": par,
                "ideal_s": ideal,
                "seq_base_s": seq_base,
                "wall_s": wall,
                "min_s": lo,
                "max_s": hi,
                "vs_ideal": wall / ideal - 1,
                "vs_seq": wall / seq_base - 1,
                "tutorial_s": tut,
                "tutorial_vs_ideal": tut / ideal - 1,
                "run_s": run,
                "original": ORIGINAL.get(row, {}).get(n),
                "samples": samples,
            }
            table.append(entry)
            orig = entry["original"]
            print(
                f"{ROWS[row][0]:<{LABEL_W}} {n:>5} {ideal * 1000:>9.1f} {seq_base * 1000:>10.1f} "
                f"{wall * 1000:>9.1f} {f'[{lo * 1000:.1f}..{hi * 1000:.1f}]':>17} "
                f"{pct(entry['vs_ideal']):>8} {pct(entry['vs_seq']):>7} "
                f"{(f'{orig:+.1f}%' if orig is not None else ''):>6} "
                f"{tut * 1000:>11.1f} {pct(entry['tutorial_vs_ideal']):>8} {run:>7.2f}  "
                f"{samples[len(samples) // 2]['split']}"
            )
        print()
    print("vs ideal: wall / (items x 10 ms / parallelism) - 1, as the original reported it")
    print("vs seq:   wall / (sequential loop of this invocation / parallelism) - 1")
    print("orig:     the original's published overhead (2014) for the same row")
    print(
        "tutorial: first collection -> handle_finished (the original's stopwatch); "
        "run(): the distributor's RunReport.wall_time_s"
    )
    print("split:    items executed per worker (or pool) process (median run)")
    if any(r.rstrip("0123456789") in h.STDLIB_POOLS for r in rows):
        print(
            "pools:    PPE = ProcessPoolExecutor; the clock runs from the first submission "
            "to the last result, the pool already started and warm"
        )
    print()
    verdicts = []
    for entry in table:
        limit = target(entry["row"], entry["items"])
        if limit is None:
            continue
        ok = entry["vs_seq"] < limit
        verdicts.append(ok)
        print(
            f"target vs seq < {limit * 100:.0f}%: {ROWS[entry['row']][0]:<{LABEL_W}} "
            f"{entry['items']:>5} items {pct(entry['vs_seq']):>7}  {'met' if ok else 'MISSED'}"
        )
    if verdicts:
        print(f"{sum(verdicts)}/{len(verdicts)} rows within target")

    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {
                    "facts": h.machine_facts(),
                    "transport": args.transport,
                    "repeat": repeat,
                    "rows": table,
                },
                out,
                indent=1,
            )
    if chart:
        draw_chart(table, chart)


def draw_chart(table: list[dict[str, Any]], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart")
        return
    rows = [r for r in ROWS if r in ORIGINAL and r != "seq" and any(e["row"] == r for e in table)]
    if not rows:
        return
    fig, axes = plt.subplots(1, len(rows), figsize=(3.8 * len(rows), 4.0), squeeze=False)
    width = 0.2
    for ax, row in zip(axes[0], rows, strict=False):
        entries = [e for e in table if e["row"] == row]
        counts = [e["items"] for e in entries]
        xs = range(len(counts))
        original = [ORIGINAL[row].get(n, float("nan")) for n in counts]
        ideal = [e["vs_ideal"] * 100 for e in entries]
        seq = [e["vs_seq"] * 100 for e in entries]
        stopwatch = [e["tutorial_vs_ideal"] * 100 for e in entries]
        for offset, values, label, color in (
            (-1.5 * width, original, "original (2014), its stopwatch, vs ideal", "#bbbbbb"),
            (-0.5 * width, stopwatch, "zmqpipeline, the original's stopwatch, vs ideal", "#8da0cb"),
            (0.5 * width, ideal, "zmqpipeline vs ideal", "#4c72b0"),
            (1.5 * width, seq, "zmqpipeline vs sequential loop", "#55a868"),
        ):
            bars = ax.bar([x + offset for x in xs], values, width, label=label, color=color)
            ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=6, padding=1)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([str(n) for n in counts])
        ax.set_xlabel("items of 10 ms")
        ax.set_title(ROWS[row][0], fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("overhead % (each panel its own scale)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle("Overhead per row: the original's published figures and zmqpipeline", fontsize=11)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    fig.savefig(path, dpi=110)
    print(f"chart written to {path}")


if __name__ == "__main__":
    main()
