"""The same pipeline written with bare pyzmq, as plainly as possible: the ceiling.

Same topology and message pattern as zmqpipeline: the distributor's ROUTER hands items to
worker DEALERs, one item per message, as long as the worker has credit; a worker PUSHes
each result to the collector's PULL and gives one credit back; the collector PUSHes an ACK
per result back to the distributor's PULL; when every item is ACKed the distributor sends
END to the workers and to the collector. Payloads are msgpack. No heartbeats, retries,
validation, metadata or run ids: none of what makes zmqpipeline survive a crash.

``batched=True`` is the fastest batched form of that shape we can write, the yardstick for
small items: the distributor hands out items in messages of half a worker's credit (two
messages in flight per worker, so a worker never waits for its next batch), a worker calls
its function on every item of a message and sends all the results in one message to the
collector and the credit for all of them in one message back, and the collector ACKs each
results message with one message. (Until 2026-12-08 "batched" batched the hand-out only:
one message per result and per quarter of the credit; the RESULTS.md tables before that
date were measured against that slower form.)

``linger=<seconds>`` is the coalescing variant (one item per message from the distributor,
as in the plain pipeline): the worker holds its results and the credit for them, and
sends them together when the oldest result it holds is ``linger`` seconds old or when
nothing is queued for it (no item waiting on its socket): all held results in one
message to the collector, all held credit in one message to the distributor (two
sockets, two peers: one message each). The collector ACKs each such message with one ACK.

Times are stamped like the zmqpipeline runs (see _harness.py): ``t_first`` when the first
item goes out (after every worker said READY), ``t_finished`` when the collector gets END.
"""

from __future__ import annotations

import time
from typing import Any

import _harness as h
import msgpack
import zmq

__all__ = ["run_bare"]


def distributor(
    ep: h.Endpoints, n_items: int, n_workers: int, payload: Any, one_at_a_time: bool, batched: bool
) -> dict[str, Any]:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.bind(ep.work)
    to_collector = ctx.socket(zmq.PUSH)
    to_collector.connect(ep.results)
    acks = ctx.socket(zmq.PULL)
    acks.connect(ep.acks)

    credit: dict[bytes, int] = {}
    while len(credit) < n_workers:  # every worker says READY with its credit
        wid, _ready, body = router.recv_multipart()  # b"READY"
        credit[wid] = msgpack.unpackb(body)
    workers = list(credit)
    chunk = max(1, max(credit.values()) // 2)  # batched: two messages in flight per worker

    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    poller.register(acks, zmq.POLLIN)
    body = msgpack.packb(payload)
    sent = acked = 0
    round_trips: list[float] = []
    sent_at = 0.0
    t_first = time.monotonic()
    while acked < n_items:
        for wid in workers:
            while batched and sent < n_items and credit[wid] >= min(chunk, n_items - sent):
                n = min(chunk, n_items - sent)
                batch = [[seq, payload] for seq in range(sent, sent + n)]
                router.send_multipart([wid, b"ITEMS", msgpack.packb(batch)])
                credit[wid] -= n
                sent += n
            while credit[wid] and sent < n_items and (not one_at_a_time or sent == acked):
                sent_at = time.perf_counter()
                router.send_multipart([wid, b"ITEM", msgpack.packb(sent), body])
                credit[wid] -= 1
                sent += 1
        for sock, _ in poller.poll():
            if sock is router:
                wid, _credit, n = router.recv_multipart()  # b"CREDIT", b"" for one
                credit[wid] += msgpack.unpackb(n) if n else 1
                continue
            ack = msgpack.unpackb(acks.recv())  # a list of seqs when batched or coalesced
            if isinstance(ack, list):
                acked += len(ack)
                continue
            acked += 1
            if one_at_a_time:
                round_trips.append(time.perf_counter() - sent_at)
    for wid in workers:
        router.send_multipart([wid, b"END", b""])
    to_collector.send(b"END")
    ctx.destroy(linger=1000)
    return {"t_first": t_first, "round_trips": round_trips}


def work(data: Any, delay_s: float) -> None:
    """The batched worker's function, called on every item (empty items: it returns None)."""
    if delay_s:
        time.sleep(data["workload"])


def worker(ep: h.Endpoints, window: int, delay_s: float, linger: float | None = None) -> int:
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(ep.work)
    push = ctx.socket(zmq.PUSH)
    push.connect(ep.results)
    dealer.send_multipart([b"READY", msgpack.packb(window)])
    done = 0
    held: list[list[Any]] = []  # coalescing: results (and as many credits) not sent yet
    held_since = 0.0
    while True:
        kind, *frames = dealer.recv_multipart()
        if kind == b"END":
            break
        if kind == b"ITEMS":  # batched: the results in one message, the credit in another
            batch = msgpack.unpackb(frames[0])
            results = [[seq, work(data, delay_s)] for seq, data in batch]
            push.send(msgpack.packb(results))
            dealer.send_multipart([b"CREDIT", msgpack.packb(len(results))])
            done += len(results)
            continue
        seq = msgpack.unpackb(frames[0])
        data = msgpack.unpackb(frames[1])
        if delay_s:
            time.sleep(data["workload"])
        done += 1
        if linger is None:
            push.send(msgpack.packb([seq, None]))
            dealer.send_multipart([b"CREDIT", b""])
            continue
        if not held:
            held_since = time.monotonic()
        held.append([seq, None])
        if time.monotonic() - held_since >= linger or not dealer.poll(0):
            push.send(msgpack.packb(held))
            dealer.send_multipart([b"CREDIT", msgpack.packb(len(held))])
            held = []
    ctx.destroy(linger=1000)
    return done


def collector(ep: h.Endpoints, batched: bool, coalesced: bool = False) -> dict[str, Any]:
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(ep.results)
    acks = ctx.socket(zmq.PUSH)
    acks.bind(ep.acks)
    count = 0
    t_first = None
    while True:
        message = pull.recv()
        if message == b"END":
            t_finished = time.monotonic()
            break
        if t_first is None:
            t_first = time.monotonic()
        if coalesced or batched:  # a list of [seq, result]: one ACK for all of them
            results = msgpack.unpackb(message)
            count += len(results)
            acks.send(msgpack.packb([seq for seq, _result in results]))
            continue
        seq, _result = msgpack.unpackb(message)
        count += 1
        acks.send(msgpack.packb(seq))
    ctx.destroy(linger=1000)
    return {"count": count, "t_first": t_first, "t_finished": t_finished}


def run_bare(
    transport: str,
    n_items: int,
    n_workers: int,
    *,
    window: int = 64,
    delay_s: float = 0.0,
    one_at_a_time: bool = False,
    batched: bool = False,
    linger: float | None = None,
    payload: dict[str, Any] | None = None,
    timeout_s: float = 600.0,
) -> h.PipelineResult:
    """Run the bare pipeline's roles as separate processes (collector, distributor, workers).
    ``linger`` (seconds) runs the coalescing worker (see the module docstring); ``payload``
    is the dict every item carries (with ``delay_s``, its sleep is added to it)."""
    if linger is not None and (batched or one_at_a_time):
        raise ValueError("linger is for the plain pipeline (not batched, not one_at_a_time)")
    payload = {**(payload or {}), **({"workload": delay_s} if delay_s else {})}
    with h.private_endpoints(transport) as ep:
        roles: list[h.Role] = [
            (
                "collector",
                lambda: collector(ep, batched, coalesced=linger is not None),
                [ep.results, ep.acks],
            ),
            (
                "distributor",
                lambda: distributor(ep, n_items, n_workers, payload, one_at_a_time, batched),
                [ep.work],
            ),
        ]
        roles += [
            ("worker", lambda: worker(ep, 1 if one_at_a_time else window, delay_s, linger), [])
        ] * n_workers
        out = h.run_processes(roles, timeout_s)
    col, dist = out["collector"][0], out["distributor"][0]
    if col["count"] != n_items:
        raise h.BenchmarkError(f"bare collector saw {col['count']} of {n_items} items")
    rtts = dist["round_trips"]
    latency = {}
    if rtts:
        latency = {
            "p50": h.percentile(rtts, 0.5) * 1000,
            "p90": h.percentile(rtts, 0.9) * 1000,
            "p99": h.percentile(rtts, 0.99) * 1000,
        }
    return h.PipelineResult(
        items=n_items,
        collected=col["count"],
        failed=0,
        dispatch_s=col["t_finished"] - dist["t_first"],
        collector_s=col["t_finished"] - (col["t_first"] or col["t_finished"]),
        run_s=col["t_finished"] - dist["t_first"],
        per_worker=sorted(out["worker"], reverse=True),
        latency_ms=latency,
        task_stats={"round_trips": rtts},
    )
