"""Driving the scheduler by hand: task classes, a started scheduler, its decoded
outbox and ACKs, with a hand-held clock."""

from __future__ import annotations

from support import acks
from zmqpipeline import EndpointAddress, Settings, Task, TaskType, protocol
from zmqpipeline.distributor.scheduler import Scheduler

for name in ("S_A", "S_B", "S_C"):
    TaskType.register_type(name)


EP = "ipc://a.ipc"


EP_B = "ipc://b.ipc"


SETTINGS = Settings(
    heartbeat_interval_s=1.0,
    liveness_misses=3,
    max_attempts=3,
    retry_backoff_s=0.5,
    retry_backoff_max_s=2.0,
)


def task_class(task_type: str, n: int, endpoint: str = EP, deps=(), hold=False, raises=False):
    class Counting(Task):
        def __init__(self):
            super().__init__()
            self.count = 0

        def is_available_for_handling(self, last_ack_data):
            # with ``hold``: the next item only once the previous one's ACK is back
            return not hold or self.count == 0 or (last_ack_data or {}).get("seq") == self.count - 1

        def handle(self, data, address, msgtype):
            if raises:
                raise RuntimeError("handle broke")
            self.count += 1
            if self.count >= n:
                self.is_complete = True
            return {"n": self.count, "meta": data.get("m")}

    Counting.task_type = TaskType(task_type)
    Counting.endpoint = EndpointAddress(endpoint)
    Counting.dependencies = [TaskType(d) for d in deps]
    return Counting


def make(*classes, settings=SETTINGS) -> Scheduler:
    s = Scheduler([cls() for cls in classes], settings, run=42)
    s.on_collector_hello(b"collector", 0.0)  # a collector is up (before the run starts)
    return s


def sent(s: Scheduler, now: float = 0.0):
    """Decode and clear the outbox: [(channel, identity, kind, body)]. A welcomed worker
    completes the handshake at ``now`` (its CREDIT 0), and what that hands out is
    included."""
    out = []
    while s.outbox:
        outbox, s.outbox = s.outbox, []
        welcomed = []
        for ch, ident, frames in outbox:
            record = protocol.decode(frames)
            out.append((ch, ident, protocol.kind_of(record), list(record)))
            if type(record) is protocol.Welcome:
                welcomed.append((ch, ident))
        for ch, ident in welcomed:
            s.on_worker_message(ch, ident, protocol.Credit(0), now)
        if welcomed:
            s.dispatch(now)
    return out


def data_items(messages, wid=None):
    return [
        seq
        for ch, ident, kind, body in messages
        if kind == protocol.DATA and (wid is None or ident == wid)
        for seq, _ in body[1]
    ]


def ack(s, task_type, seqs, now, error=None, by=b"w1", results=None, first=None):
    """ACK ``seqs``; ``results`` (seq -> dict) are the results the collector forwards.
    ``first``: the collector handled them in this ACK (by default unless ``error``)."""
    results = results or {}
    first = error is None if first is None else first
    entries = [[task_type, seq, {"seq": seq}, error, by, results.get(seq), first] for seq in seqs]
    s.on_ack(acks.groups(entries), now)
