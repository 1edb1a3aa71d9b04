"""What an open dashboard costs a run: the throughput benchmark's empty items with no
dashboard, against the same run with a dashboard server and 10 pages' event streams open
on it, alternately in the same invocation (issue 32: within 1 %).

    python benchmarks/dashboard.py --quick          # 1000000 items, 3 repeats each
    python benchmarks/dashboard.py                  # 3000000 items, 5 repeats each
    python benchmarks/dashboard.py --clients 10 --workers 2 --items 3000000

The dashboard server (``zmqpipeline.dashboard.DashboardServer``) runs in a process of its
own, as ``zmqpipeline dashboard`` does, and reads the distributor's status once a second;
the 10 clients (another process, one thread each, as 10 browser tabs) read its event
stream. Items per second = items / (first item handed out -> collector sees the end), as
in throughput.py; the median of the repeats, their ratio, and the ratio of each run with
the dashboard to the run without it just before (on a shared machine whose load changes
during the invocation, the pairs say more than the medians). A run needs a few seconds so
that several status reads fall inside it. The CPU seconds the dashboard server and the
clients used are printed too: what they take from the run, whatever the noise.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as h
from throughput import build

_FORK = multiprocessing.get_context("fork")
#: (clients, the distributor's CPU µs per item) of every run: CPU time, unlike items/s,
#: does not move with the load other processes put on the machine.
DISTRIBUTOR_CPU_US: list[tuple[int, float]] = []


def _serve(endpoint: str, port: int, reads: Any, cpu: Any, stop: Any) -> None:
    """Child: a dashboard server for ``endpoint`` until ``stop``; ``reads``: its status
    reads, ``cpu``: the CPU seconds it used."""
    from zmqpipeline.dashboard import DashboardServer

    server = DashboardServer(endpoint, f"127.0.0.1:{port}")
    server.start()
    try:
        stop.wait(600)
    finally:
        reads.value = server.poller.polls
        server.close()
        cpu.value = h.proc_cpu_s()


def _clients(port: int, n: int, events: Any, cpu: Any, stop: Any) -> None:
    """Child: ``n`` event streams read at once (as ``n`` open pages) until ``stop``."""
    counts = [0] * n

    def read(index: int) -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/events", timeout=5) as s:
                    while not stop.is_set() and (line := s.readline()):
                        counts[index] += line.startswith(b"data: ")
            except OSError:
                stop.wait(0.1)  # the server is not up yet

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    stop.wait(600)
    events.value = sum(counts)
    cpu.value = h.proc_cpu_s()


def _end(process: Any) -> None:
    process.join(10)
    if process.exitcode is None and process.pid is not None:
        os.kill(process.pid, 9)
        process.join()


def one_run(n_items: int, n_workers: int, clients: int) -> tuple[float, int, int, float, float]:
    """Items/s of one run; the status reads and events of its dashboard, the CPU seconds
    of the server and of the clients (0 without)."""
    directory = tempfile.mkdtemp(prefix="zmqp-dashboard-bench-")
    endpoint = f"ipc://{directory}/control.ipc"
    os.environ["ZMQPIPELINE_CONTROL_ENDPOINT"] = endpoint  # only the distributor reads it
    reads, events, stop = _FORK.Value("i", 0), _FORK.Value("i", 0), _FORK.Event()
    cpu = _FORK.Value("d", 0.0), _FORK.Value("d", 0.0)
    children = []
    if clients:
        port = h.free_port()
        children.append(_FORK.Process(target=_serve, args=(endpoint, port, reads, cpu[0], stop)))
        children.append(_FORK.Process(target=_clients, args=(port, clients, events, cpu[1], stop)))
    for child in children:
        child.start()
    try:
        with h.private_endpoints("ipc") as endpoints:
            task, worker, collector = build(endpoints, n_items)
            result = h.run_pipeline(
                task, worker, collector, n_workers, timeout_s=20 + n_items / 2000
            )
    finally:
        del os.environ["ZMQPIPELINE_CONTROL_ENDPOINT"]
        stop.set()
        for child in children:
            _end(child)
        os.rmdir(directory)
    if result.collected != n_items or result.failed:
        raise h.BenchmarkError(f"collected {result.collected} of {n_items}")
    DISTRIBUTOR_CPU_US.append((clients, 1e6 * result.cpu_s["distributor"] / n_items))
    return (
        n_items / result.dispatch_s,
        int(reads.value),
        int(events.value),
        cpu[0].value,
        cpu[1].value,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1000000 items, 3 repeats")
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--clients", type=int, default=10, help="event streams open")
    args = parser.parse_args()
    n_items = args.items or (1_000_000 if args.quick else 3_000_000)
    repeat = args.repeat or (3 if args.quick else 5)
    h.print_facts("dashboard.py")
    plain: list[float] = []
    watched: list[float] = []
    reads = events = 0
    server_cpu = client_cpu = 0.0
    for _ in range(repeat):  # alternately, so the machine's load hits both alike
        plain.append(one_run(n_items, args.workers, 0)[0])
        rate, r, e, sc, cc = one_run(n_items, args.workers, args.clients)
        watched.append(rate)
        reads, events = reads + r, events + e
        server_cpu, client_cpu = server_cpu + sc, client_cpu + cc
    a, b = statistics.median(plain), statistics.median(watched)
    print(f"{n_items} empty items, {args.workers} worker(s), ipc, {repeat} repeats, alternated")
    print(
        f"  no dashboard        {a:>10,.0f} items/s   runs {', '.join(f'{r:,.0f}' for r in plain)}"
    )
    print(
        f"  {args.clients} pages open      {b:>10,.0f} items/s   runs "
        f"{', '.join(f'{r:,.0f}' for r in watched)}"
    )
    for clients, label in ((0, "no dashboard"), (args.clients, f"{args.clients} pages open")):
        cpu_us = [us for c, us in DISTRIBUTOR_CPU_US if c == clients]
        print(
            f"  distributor CPU, {label:<14} {statistics.median(cpu_us):.2f} us/item  "
            f"runs {', '.join(f'{us:.2f}' for us in cpu_us)}"
        )
    total_s = sum(n_items / r for r in watched)
    print(
        f"  dashboard's own CPU {100 * (server_cpu + client_cpu) / total_s:.2f} % of one core "
        f"over the runs with it ({total_s:.1f} s)"
    )
    print(
        f"  ({reads} status reads in all, {events} events delivered to the pages; CPU: "
        f"dashboard server {server_cpu:.2f} s, clients {client_cpu:.2f} s in all)"
    )
    pairs = sorted(w / p - 1 for p, w in zip(plain, watched, strict=True))
    print(f"  difference          {100 * (b / a - 1):+.1f} %  of the medians (target: within 1 %)")
    print(
        f"  run by run          {', '.join(f'{100 * r:+.1f}' for r in pairs)} %  "
        f"(median {100 * statistics.median(pairs):+.1f} %: each run against the one before it)"
    )
    sys.stdout.flush()
    time.sleep(0)


if __name__ == "__main__":
    main()
