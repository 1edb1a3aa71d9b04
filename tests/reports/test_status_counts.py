"""The cases the issue found, one by one, driven through the socket-free Scheduler and
ControlLogic with a hand-held clock (the property test in test_counts_add_up.py covers
them at random)."""

from __future__ import annotations

import logging
from typing import Any

from zmqpipeline import EndpointAddress, Settings, Task, TaskType, protocol
from zmqpipeline.distributor.control import ControlLogic
from zmqpipeline.distributor.scheduler import Scheduler

TaskType.register_type("R_ONE")
EP = "ipc://reports-one.ipc"
SETTINGS = Settings(heartbeat_interval_s=1.0, liveness_misses=3, max_attempts=1)


class Numbers(Task):
    task_type = TaskType("R_ONE")
    endpoint = EndpointAddress(EP)
    n_items = 10

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def handle(self, data: Any, address: Any, msgtype: Any) -> dict[str, Any]:
        self.n += 1
        self.is_complete = self.n >= self.n_items
        return {"n": self.n}


def running(capacity: int = 2) -> tuple[Scheduler, ControlLogic, list[int]]:
    s = Scheduler([Numbers()], SETTINGS, run=3)
    s.on_collector_hello(b"collector", 0.0)
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("R_ONE", capacity, capacity, 1), 0.0)
    s.on_worker_message(EP, b"w1", protocol.Credit(0), 0.0)
    s.dispatch(0.0)
    return s, ControlLogic(s, "ipc://control.ipc"), sent(s)


def sent(s: Scheduler) -> list[int]:
    seqs = []
    for _, _, frames in s.outbox:
        record = protocol.decode(frames)
        if type(record) is protocol.Data:
            seqs += [seq for seq, _ in record.items]
    s.outbox.clear()
    return seqs


def ack(s: Scheduler, seqs: list[int], now: float) -> None:
    n = len(seqs)
    group = protocol.ack_group("R_ONE", b"w1", seqs, [None] * n, [None] * n, [None] * n, [True] * n)
    s.on_ack([group], now)


def command(logic: ControlLogic, name: str, now: float) -> dict[str, Any]:
    ok, body = logic.handle(protocol.Control(1, name, {}), now)
    assert ok, body
    return body


def test_a_retried_item_then_a_drain_counts_every_item_once():
    """After ``retry`` and ``drain`` the report said 1 630 collected + 1 367 never
    handed out = 2 997 of 3 000: the re-driven item was counted against the size twice."""
    s, logic, handed = running()
    assert handed == [0, 1]
    s.on_worker_message(EP, b"w1", protocol.Fail(0, "ValueError: bad", ["ValueError"]), 0.1)
    ack(s, [1], 0.1)
    assert [f["item_id"] for f in s.tasks["R_ONE"].failed] == ["R_ONE/0"]
    ok, body = logic.handle(protocol.Control(1, "retry_failed", {}), 0.2)
    assert ok and body["retried"] == [{"item_id": "R_ONE/0", "new_item_id": "R_ONE/2"}]
    command(logic, "drain", 0.2)
    s.on_worker_message(EP, b"w1", protocol.Credit(2), 0.3)
    s.dispatch(0.3)
    assert sent(s) == [2]  # the re-driven one; nothing new
    ack(s, [2], 0.4)
    assert s.done and s.ended_by == "drained"
    for t in (s.summary(aborted=False)["tasks"]["R_ONE"], logic.status(0.4)["tasks"]["R_ONE"]):
        assert (t["collected"], t["failed"], t["in_flight"], t["not_handed_out"]) == (2, 0, 0, 8)
        assert t["handed_out"] == 2


def beat(s: Scheduler, now: float, credit: int = 0) -> None:
    """The worker is alive (and asks for ``credit`` more); a heartbeat period passes."""
    s.on_worker_message(EP, b"w1", protocol.Credit(credit), now)
    s.tick(now)
    s.dispatch(now)


def test_a_paused_run_shows_no_rate_and_no_eta_and_starts_the_rate_again():
    """While paused, status showed a decaying items/s and a growing ETA."""
    s, logic, handed = running()
    beat(s, 0.0)
    ack(s, handed, 1.0)
    beat(s, 2.0)
    assert logic.status(2.0)["tasks"]["R_ONE"]["rate"] == 1.0  # 2 items in 2 s
    command(logic, "pause", 2.0)
    for now in (3.0, 4.0, 8.0):
        beat(s, now, credit=2)
        task = logic.status(now)["tasks"]["R_ONE"]
        assert (task["rate"], task["eta_s"], task["state"]) == (None, None, "paused")
    command(logic, "resume", 8.0)
    beat(s, 8.0)
    handed = sent(s)
    assert handed == [2, 3]
    ack(s, handed, 9.0)
    beat(s, 10.0)
    task = logic.status(10.0)["tasks"]["R_ONE"]
    assert task["rate"] == 1.0, task  # 2 items in the 2 s since the resume, not 4 in 10
    assert task["eta_s"] == 6.0  # 6 items left at 1 item/s


def test_a_worker_gone_holding_nothing_is_no_warning(caplog):
    """A send to a worker that has left after its last item failed: it was logged as
    ``WARNING worker went away ... re-issuing its 0 item(s)``."""
    s, _, handed = running()
    ack(s, handed, 0.5)
    with caplog.at_level(logging.INFO, logger="zmqpipeline.distributor"):
        s.worker_unreachable(b"w1", 1.0)
    assert b"w1" not in s.workers
    assert [r.levelname for r in caplog.records] == ["INFO"], caplog.text
    assert "worker w1 left" in caplog.text
    s.on_worker_message(EP, b"w2", protocol.Ready("R_ONE", 2, 2, 1), 1.0)
    s.on_worker_message(EP, b"w2", protocol.Credit(0), 1.0)
    s.dispatch(1.0)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="zmqpipeline.distributor"):
        s.worker_unreachable(b"w2", 2.0)  # it held two: re-issued, and that is news
    assert "re-issuing its 2 item(s)" in caplog.text
    assert caplog.records[-1].levelname == "WARNING"
