"""What answering ``status`` costs a run: the throughput benchmark's empty items, with an
operator polling the distributor's control endpoint 20 times a second, against the same
run unpolled, alternately in the same invocation (issue 15: under 5 %).

    python benchmarks/control.py --quick            # 10000 items, 2 repeats each
    python benchmarks/control.py                    # 50000 items, 3 repeats each
    python benchmarks/control.py --hz 20 --workers 2 --items 50000

Items per second = items / (first item handed out -> collector sees the end), as in
throughput.py; the median of the repeats, and their ratio.

Now and then a run of the harness stalls (no item in flight, nothing handed out, workers
alive: seen with and without a control endpoint, never traced to it); such a run is cut
after its timeout, counted and run again.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as h
from throughput import build

import zmqpipeline as zp
from zmqpipeline.errors import ControlError

_FORK = multiprocessing.get_context("fork")


def _poll(endpoint: str, hz: float, count: Any, stop: Any) -> None:
    """Child: ask for the status ``hz`` times a second while the distributor answers."""
    control = zp.Control(endpoint, timeout=1.0)
    answered = False
    while not stop.is_set():
        try:
            control.status()
            answered = True
            count.value += 1
        except ControlError:
            if answered:
                return  # the run is over
        stop.wait(1.0 / hz)


def one_run(transport: str, n_items: int, n_workers: int, hz: float) -> tuple[float, int]:
    """Items/s of one run, and the number of status answers it gave."""
    directory = tempfile.mkdtemp(prefix="zmqp-control-bench-")
    endpoint = f"ipc://{directory}/control.ipc"
    # Through the environment, as throughput.py runs (no settings object for every role:
    # with one, runs of the harness stall now and then with or without a control endpoint,
    # see the report of issue 15); only the distributor reads this variable.
    os.environ["ZMQPIPELINE_CONTROL_ENDPOINT"] = endpoint
    count, stop = _FORK.Value("i", 0), _FORK.Event()
    poller = None
    if hz > 0:
        poller = _FORK.Process(target=_poll, args=(endpoint, hz, count, stop))
        poller.start()
    try:
        with h.private_endpoints(transport) as endpoints:
            task, worker, collector = build(endpoints, n_items)
            result = h.run_pipeline(
                task, worker, collector, n_workers, timeout_s=20 + n_items / 2000
            )
    finally:
        del os.environ["ZMQPIPELINE_CONTROL_ENDPOINT"]
        stop.set()
        if poller is not None:
            poller.join(5)
            if poller.exitcode is None and poller.pid is not None:
                os.kill(poller.pid, 9)
                poller.join()
        os.rmdir(directory)
    if result.collected != n_items or result.failed:
        raise h.BenchmarkError(f"collected {result.collected} of {n_items}")
    return n_items / result.dispatch_s, int(count.value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10000 items, 2 repeats")
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--hz", type=float, default=20.0, help="status polls per second")
    parser.add_argument("--transport", default="ipc", choices=["ipc", "tcp"])
    args = parser.parse_args()
    n_items = args.items or (10_000 if args.quick else 50_000)
    repeat = args.repeat or (2 if args.quick else 3)
    plain: list[float] = []
    polled: list[float] = []
    answers: list[int] = []
    stalls = 0

    def measured(hz: float) -> tuple[float, int]:
        nonlocal stalls
        for _ in range(3):
            try:
                return one_run(args.transport, n_items, args.workers, hz)
            except h.BenchmarkError as exc:  # a stalled run (see the module docstring)
                stalls += 1
                print(f"  a run stalled, run again: {str(exc).splitlines()[0]}", flush=True)
        raise h.BenchmarkError("three stalled runs in a row")

    for _ in range(repeat):  # alternately, so the machine's load hits both alike
        plain.append(measured(0.0)[0])
        rate, n = measured(args.hz)
        polled.append(rate)
        answers.append(n)
    a, b = statistics.median(plain), statistics.median(polled)
    print(f"{n_items} empty items, {args.workers} worker(s), {args.transport}, {repeat} repeats")
    print(
        f"  unpolled           {a:>10,.0f} items/s   runs {', '.join(f'{r:,.0f}' for r in plain)}"
    )
    print(
        f"  status at {args.hz:g}/s     {b:>10,.0f} items/s   runs "
        f"{', '.join(f'{r:,.0f}' for r in polled)}  ({sum(answers)} status answers)"
    )
    print(f"  cost of polling    {100 * (1 - b / a):+.1f} %  (target: under 5 %)")
    if stalls:
        print(f"  {stalls} stalled run(s) cut and run again")
    sys.stdout.flush()
    time.sleep(0)


if __name__ == "__main__":
    main()
