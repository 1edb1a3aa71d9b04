"""A bare pyzmq pipeline of zmqpipeline's shape moving big values with ``copy=False``:
the yardstick of benchmarks/payload.py.

The distributor's ROUTER hands each worker DEALER items while it has credit (4 items);
an item is ``[header, msgpack body, value]`` with the value as its own frame, sent and
received without a copy; the worker PUSHes a result of the same shape to the collector's
PULL and gives the credit back; the collector tells the distributor when it has them all.
No heartbeats, retries, ids or validation: only the bytes and the messages.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from typing import Any

import msgpack
import zmq

__all__ = ["peak_mib", "reset_peak", "run_bare"]

CREDIT = 4
FORK = multiprocessing.get_context("fork")


def reset_peak() -> None:
    """Start this (forked) process's peak RSS afresh: a forked child inherits its
    parent's peak, and would report the benchmark's own biggest cell."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset VmHWM to the current RSS (Linux 4.0 and later)
    except OSError:
        pass


def peak_mib() -> float:
    """This process's peak RSS since :func:`reset_peak`, MiB (``VmHWM``; ``ru_maxrss``
    where /proc is missing). It counts the pages it still shares with the benchmark
    process it was forked from (the same for every pipeline measured)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _distributor(ep: dict[str, str], n: int, workers: int, item: bytes, out: Any) -> None:
    reset_peak()
    ctx = zmq.Context()
    router, done = ctx.socket(zmq.ROUTER), ctx.socket(zmq.PULL)
    router.bind(ep["work"])
    done.bind(ep["done"])
    credit: dict[bytes, int] = {}
    while len(credit) < workers:
        wid, _ = router.recv_multipart()
        credit[wid] = CREDIT
    body = msgpack.packb({"i": 0})
    start, sent = time.perf_counter(), 0
    while sent < n or not done.poll(0):
        for wid in credit:
            while credit[wid] and sent < n:
                router.send_multipart([wid, b"D", body, item], copy=False)
                credit[wid] -= 1
                sent += 1
        if router.poll(100):
            wid, _ = router.recv_multipart()
            credit[wid] += 1
        elif sent >= n and done.poll(100):
            break
    elapsed = time.perf_counter() - start
    for wid in credit:
        router.send_multipart([wid, b"E"])
    out.put(("distributor", elapsed, peak_mib()))
    time.sleep(0.2)  # let END leave
    ctx.destroy(linger=1000)


def _worker(ep: dict[str, str], result: bytes, out: Any) -> None:
    reset_peak()
    ctx = zmq.Context()
    dealer, push = ctx.socket(zmq.DEALER), ctx.socket(zmq.PUSH)
    dealer.connect(ep["work"])
    push.connect(ep["results"])
    dealer.send(b"R")
    while True:
        frames = dealer.recv_multipart(copy=False)
        if frames[0].bytes == b"E":
            break
        msgpack.unpackb(frames[1].bytes)
        value = frames[2].buffer
        push.send_multipart([b"R", msgpack.packb({"n": len(value)}), result], copy=False)
        dealer.send(b"C")
    out.put(("worker", 0.0, peak_mib()))
    ctx.destroy(linger=1000)


def _collector(ep: dict[str, str], n: int, out: Any) -> None:
    reset_peak()
    ctx = zmq.Context()
    pull, done = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind(ep["results"])
    done.connect(ep["done"])
    for _ in range(n):
        frames = pull.recv_multipart(copy=False)
        msgpack.unpackb(frames[1].bytes)
        frames[2].buffer  # noqa: B018  (the value, as a worker's code would read it)
    done.send(b"done")
    out.put(("collector", 0.0, peak_mib()))
    ctx.destroy(linger=1000)


def run_bare(
    ep: dict[str, str], n: int, workers: int, item: bytes, result: bytes
) -> tuple[float, dict[str, float]]:
    """Seconds from the first item sent to the last result collected, and peak RSS (MiB)
    per role (the workers': the largest)."""
    out = FORK.Queue()
    procs = [FORK.Process(target=_collector, args=(ep, n, out))]
    procs += [FORK.Process(target=_worker, args=(ep, result, out)) for _ in range(workers)]
    procs.append(FORK.Process(target=_distributor, args=(ep, n, workers, item, out)))
    for p in procs:
        p.start()
    reports = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(10)
    rss: dict[str, float] = {}
    elapsed = 0.0
    for role, seconds, peak in reports:
        rss[role] = max(rss.get(role, 0.0), peak)
        elapsed = max(elapsed, seconds)
    return elapsed, rss
