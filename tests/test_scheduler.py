"""The distributor's decisions, driven directly: no sockets, a hand-held clock."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import acks
import pytest

from zmqpipeline import ConfigurationError, EndpointAddress, Settings, Task, TaskType, protocol
from zmqpipeline.distributor.scheduler import COLLECTOR, Scheduler, check_dependencies
from zmqpipeline.runtime.seen import SeenSet

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


def test_start_tells_the_collector_and_welcomes_waiting_workers():
    s = make(task_class("S_A", 3))
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 2, 2, 1), 0.0)
    assert sent(s) == []  # nothing before the run starts (metadata may be pending)
    s.start({"m": "x"}, 0.0)
    out = sent(s)
    assert out[0] == (COLLECTOR, None, protocol.START, [42, {"m": "x"}, ["S_A"], [], []])
    assert out[1] == (EP, b"w1", protocol.WELCOME, [42, {"m": "x"}, {}])
    assert data_items(out) == [0, 1]  # credit 2: two items in one message
    assert len([m for m in out if m[2] == protocol.DATA]) == 1


def test_nothing_is_handed_out_before_a_collector_is_up():
    s = Scheduler([task_class("S_A", 3)()], SETTINGS, run=42)
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 2, 2, 1), 0.0)
    s.dispatch(0.0)
    assert data_items(sent(s)) == []
    s.on_collector_hello(b"collector", 0.1)
    s.dispatch(0.1)
    out = sent(s)
    assert (COLLECTOR, None, protocol.START, [42, {}, ["S_A"], [], []]) in out  # START again
    assert data_items(out) == [0, 1]


def test_credit_bounds_what_a_worker_holds():
    s = make(task_class("S_A", 10))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 2, 2, 1), 0.0)
    s.dispatch(0.0)
    assert data_items(sent(s)) == [0, 1]
    s.dispatch(0.0)
    assert data_items(sent(s)) == []  # no credit left
    s.on_worker_message(EP, b"w1", protocol.Credit(1), 0.1)
    s.dispatch(0.1)
    assert data_items(sent(s)) == [2]


def test_task_finishes_only_when_every_item_is_acked():
    s = make(task_class("S_A", 3))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 5, 5, 1), 0.0)
    s.dispatch(0.0)
    assert data_items(sent(s)) == [0, 1, 2]
    ack(s, "S_A", [0, 2], 1.0)
    assert not s.done
    ack(s, "S_A", [1], 1.0)
    assert s.done
    out = sent(s)
    ends = [(ch, ident) for ch, ident, kind, _ in out if kind == protocol.END]
    # the collector first: its handle_finished ends the user's run (workers leaving at
    # once would hold it up)
    assert ends == [(COLLECTOR, None), (EP, b"w1")]
    summary = next(body for _, _, kind, body in out if kind == protocol.END)[1]
    assert summary["collected"] == {"S_A": 3} and summary["failed"] == []


def test_duplicate_and_unknown_acks_are_ignored():
    s = make(task_class("S_A", 2))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 1, 1, 1), 0.0)
    sent(s)
    ack(s, "S_A", [0], 0.1)
    ack(s, "S_A", [0, 99], 0.1)
    s.on_ack(acks.groups([["NO_SUCH_TYPE", 0, None, None, b"w1", None, True]]), 0.1)
    assert s.tasks["S_A"].collected == 1 and s.stale_acks == 3 and not s.done


def test_dependent_task_waits_for_collection_not_dispatch():
    s = make(task_class("S_A", 2), task_class("S_B", 1, EP_B, deps=["S_A"]))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"a", protocol.Ready("S_A", 4, 4, 1), 0.0)
    s.on_worker_message(EP_B, b"b", protocol.Ready("S_B", 4, 4, 1), 0.0)
    s.dispatch(0.0)
    out = sent(s)
    assert data_items(out, b"a") == [0, 1]
    assert not any(ident == b"b" for _, ident, _, _ in out)  # not even WELCOME
    ack(s, "S_A", [0], 0.1)
    s.dispatch(0.1)
    assert not any(ident == b"b" for _, ident, _, _ in sent(s))
    ack(s, "S_A", [1], 0.2)  # the last FIRST item collected: SECOND may begin
    s.dispatch(0.2)
    out = sent(s)
    assert (EP_B, b"b", protocol.WELCOME, [42, {}, {}]) in out
    assert data_items(out, b"b") == [0]


def test_cycles_and_unknown_dependencies_are_named():
    a = task_class("S_A", 1, deps=["S_C"])
    b = task_class("S_B", 1, deps=["S_A"])
    c = task_class("S_C", 1, deps=["S_B"])
    with pytest.raises(ConfigurationError, match="dependency cycle: S_A -> S_C -> S_B -> S_A"):
        check_dependencies({"S_A": a, "S_B": b, "S_C": c})
    with pytest.raises(ConfigurationError, match=r"unregistered task type.*S_C"):
        check_dependencies({"S_A": a})
    selfish = task_class("S_A", 1, deps=["S_A"])
    with pytest.raises(ConfigurationError, match="S_A -> S_A"):
        check_dependencies({"S_A": selfish})


def test_silent_worker_is_declared_dead_and_its_items_go_elsewhere():
    s = make(task_class("S_A", 4))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 2, 2, 1), 0.0)
    s.on_worker_message(EP, b"w2", protocol.Ready("S_A", 2, 2, 1), 0.0)
    s.dispatch(0.0)
    held_by_w1 = data_items(sent(s), b"w1")
    assert len(held_by_w1) == 2
    s.on_worker_message(EP, b"hb-socket", protocol.Heartbeat(b"w2"), 2.9)  # w2 alive
    s.on_worker_message(EP, b"w2", protocol.Credit(2), 2.9)
    s.tick(3.5)  # w1 silent for 3.5 s > 3 s
    assert b"w1" not in s.workers
    s.dispatch(3.5)
    assert sorted(data_items(sent(s), b"w2")) == sorted(held_by_w1)
    assert s.tasks["S_A"].retries == 2


def _item_0_fails_for_good(n_items: int) -> tuple[Scheduler, float]:
    """S_A/0 raises on each of its 3 tries (one worker, credit ``n_items``); the scheduler
    and the time after the last try."""
    s = make(task_class("S_A", n_items))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", n_items, n_items, 1), 0.0)
    now = 0.0
    for attempt in range(3):
        s.dispatch(now)
        assert 0 in data_items(sent(s)), attempt
        s.on_worker_message(EP, b"w1", protocol.Fail(0, f"ValueError: try {attempt}", []), now)
        s.on_worker_message(EP, b"w1", protocol.Credit(1), now)
        now += 10.0  # past any backoff
    return s, now


def test_item_fails_for_good_after_max_attempts_and_the_run_still_ends():
    s, _ = _item_0_fails_for_good(1)
    assert s.done
    failed = s.summary(False)["failed"]
    assert failed == [
        {
            "task_type": "S_A",
            "seq": 0,
            "item_id": "S_A/0",
            "attempts": 3,
            "deaths": 0,
            "error": "ValueError: try 2",
            "data": {"n": 1, "meta": None},
        }
    ]
    out = sent(s)
    assert (COLLECTOR, None, protocol.SKIP, [42, "S_A", 0]) in out


def test_an_item_failed_for_good_then_collected_counts_collected_even_without_ack_data():
    # Its result reached the collector before our SKIP (say the link to the collector was
    # down). The task forwards no results and handle_collection returned None: the ACK
    # carries nothing but ``first``, which a duplicate's re-ACK does not have.
    s, now = _item_0_fails_for_good(2)
    assert [f["item_id"] for f in s.tasks["S_A"].failed] == ["S_A/0"] and not s.done
    s.on_ack(acks.groups([["S_A", 0, None, None, b"w1", None, False]]), now)  # a duplicate's re-ACK
    assert [f["item_id"] for f in s.tasks["S_A"].failed] == ["S_A/0"] and s.stale_acks == 1
    s.on_ack(acks.groups([["S_A", 0, None, None, b"w1", None, True]]), now)  # collected, late
    assert s.tasks["S_A"].failed == [] and s.tasks["S_A"].collected == 1
    ack(s, "S_A", [1], now)
    assert s.done and s.summary(False)["failed"] == []
    assert s.summary(False)["collected"] == {"S_A": 2}


def test_retry_waits_for_its_backoff():
    s = make(task_class("S_A", 1))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 1, 1, 1), 0.0)
    s.dispatch(0.0)
    sent(s)
    s.on_worker_message(EP, b"w1", protocol.Fail(0, "boom", []), 1.0)
    s.on_worker_message(EP, b"w1", protocol.Credit(1), 1.0)
    assert s.next_wakeup(1.0) == pytest.approx(1.5)
    s.dispatch(1.2)
    assert data_items(sent(s)) == []
    s.dispatch(1.5)
    assert data_items(sent(s)) == [0]


def test_collector_error_sends_the_item_round_again():
    s = make(task_class("S_A", 1))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 1, 1, 1), 0.0)
    s.dispatch(0.0)
    sent(s)
    ack(s, "S_A", [0], 0.5, error="handle_collection broke")
    s.on_worker_message(EP, b"w1", protocol.Credit(1), 0.5)
    s.dispatch(5.0)
    assert data_items(sent(s)) == [0]
    ack(s, "S_A", [0], 5.1)
    assert s.done and s.summary(False)["failed"] == []


def test_an_ack_group_mixing_errors_duplicates_and_collections_settles_each_item():
    s = make(task_class("S_A", 4))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 4, 4, 1), 0.0)
    assert data_items(sent(s)) == [0, 1, 2, 3]
    group = acks.groups(
        [
            ["S_A", 0, {"n": 0}, None, b"w1", None, True],
            ["S_A", 1, None, "handle_collection broke", b"w1", None, False],
            ["S_A", 0, None, None, b"w1", None, False],  # a duplicate's re-ACK
            ["S_A", 2, {"n": 2}, None, b"w1", None, True],
            ["S_A", 3, None, None, b"w1", None, True],
        ]
    )
    assert len(group) == 1 and group[0][2] == [0, 1, 0, 2, 3]
    s.on_ack(group, 0.5)
    state = s.tasks["S_A"]
    assert state.collected == 3 and sorted(state.in_flight) == [1] and s.stale_acks == 1
    assert state.last_ack_data is None  # the last collected item's (3: none)
    assert state.workers[b"w1"].completed == 3 and state.workers[b"w1"].held == set()
    s.on_worker_message(EP, b"w1", protocol.Credit(4), 0.5)
    s.dispatch(5.0)
    assert data_items(sent(s)) == [1]  # the one handle_collection raised on, again
    ack(s, "S_A", [1], 5.1)
    assert s.done and s.summary(False)["failed"] == []


def test_is_available_for_handling_holds_items_until_an_ack():
    s = make(task_class("S_A", 3, hold=True))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 3, 3, 1), 0.0)
    s.dispatch(0.0)
    assert data_items(sent(s)) == [0]
    s.dispatch(0.1)
    assert data_items(sent(s)) == []
    ack(s, "S_A", [0], 0.2)
    s.dispatch(0.2)
    assert data_items(sent(s)) == [1]


def test_handle_that_raises_is_a_reported_failure_and_stops_the_task():
    s = make(task_class("S_A", 5, raises=True))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 1, 1, 1), 0.0)
    sent(s)
    assert s.done  # nothing was handed out, nothing is in flight: the run is over
    (failure,) = s.summary(False)["failed"]
    assert failure["seq"] is None and failure["item_id"] == "S_A/handle#1"
    assert "handle broke" in failure["error"]


def test_a_task_may_go_on_after_handle_raised():
    class Flaky(task_class("S_A", 3)):
        continue_after_error = True

        def handle(self, data, address, msgtype):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 2:
                raise RuntimeError("second call broke")
            return super().handle(data, address, msgtype)

    s = make(Flaky)
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 5, 5, 1), 0.0)
    assert data_items(sent(s)) == [0]  # the raise ends this dispatch
    s.dispatch(0.1)
    assert data_items(sent(s, 0.1)) == [1, 2]
    ack(s, "S_A", [0, 1, 2], 0.2)
    assert s.done and s.summary(False)["failed"][0]["item_id"] == "S_A/handle#2"


def test_an_ack_of_two_tasks_and_three_workers_credits_each_where_it_belongs():
    # on_ack looks up a task and a worker once per group of an ACK: groups that change
    # task or worker, and a result that came from a worker other than the holder.
    s = make(task_class("S_A", 4), task_class("S_B", 2, EP_B))
    s.start({}, 0.0)
    for ep, wid, task_type in [(EP, b"a1", "S_A"), (EP, b"a2", "S_A"), (EP_B, b"b1", "S_B")]:
        s.on_worker_message(ep, wid, protocol.Ready(task_type, 2, 2, 1), 0.0)
    out = sent(s)
    a1, a2, b1 = data_items(out, b"a1"), data_items(out, b"a2"), data_items(out, b"b1")
    assert sorted(a1 + a2) == [0, 1, 2, 3] and sorted(b1) == [0, 1]
    a, b = s.tasks["S_A"], s.tasks["S_B"]
    moved = a2[1]  # as if handed out again to a1, and a2's result then came in first
    a.in_flight[moved].worker = b"a1"
    a.workers[b"a2"].held.discard(moved)
    a.workers[b"a1"].held.add(moved)
    entries = [
        ["S_A", a1[0], None, None, b"a1", None, True],
        ["S_B", b1[0], None, None, b"b1", None, True],
        ["S_A", a2[0], None, None, b"a2", None, True],
        ["S_A", a2[1], None, None, b"a2", None, True],
        ["S_B", b1[1], None, None, b"b1", None, True],
        ["S_A", a1[1], None, None, b"a1", None, True],
    ]
    s.on_ack(acks.groups(entries), 0.5)
    assert a.collected == 4 and b.collected == 2 and not a.in_flight and not b.in_flight
    workers = {**a.workers, **b.workers}
    assert {wid: w.completed for wid, w in workers.items()} == {b"a1": 2, b"a2": 2, b"b1": 2}
    assert all(not w.held for w in workers.values())
    assert len(a.timer.samples) == 4 and len(b.timer.samples) == 2
    assert {wid: log["collected"] for wid, log in s.worker_log.items()} == {
        b"a1": 2,
        b"a2": 2,
        b"b1": 2,
    }
    assert s.done


def test_retry_policy_of_the_task_decides_what_is_retried():
    class Picky(task_class("S_A", 2)):
        retry_for = (ValueError,)
        max_attempts = 5

    s = make(Picky)
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 2, 2, 1), 0.0)
    assert data_items(sent(s)) == [0, 1]
    s.on_worker_message(EP, b"w1", protocol.Fail(0, "KeyError: k", ["KeyError"]), 0.1)
    s.on_worker_message(EP, b"w1", protocol.Fail(1, "ValueError: v", ["ValueError"]), 0.1)
    (failure,) = s.summary(False)["failed"]
    assert failure["seq"] == 0 and failure["attempts"] == 0  # not retried at all
    assert s.tasks["S_A"].in_flight[1].attempts == 1  # retried, 4 tries left


def test_unknown_worker_is_told_to_reset():
    s = make(task_class("S_A", 1))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"ghost", protocol.Credit(1), 0.0)
    assert sent(s)[-1] == (EP, b"ghost", protocol.RESET, [])


def test_worker_for_a_type_not_served_here_is_ignored():
    s = make(task_class("S_A", 1))
    s.start({}, 0.0)
    sent(s)
    s.on_worker_message(EP, b"w", protocol.Ready("S_B", 1, 1, 1), 0.0)
    s.on_worker_message(EP_B, b"w", protocol.Ready("S_A", 1, 1, 1), 0.0)
    assert sent(s) == [] and not s.workers


def test_leaving_worker_hands_its_items_back_without_using_an_attempt():
    s = make(task_class("S_A", 2))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 2, 2, 1), 0.0)
    s.dispatch(0.0)
    sent(s)
    s.on_worker_message(EP, b"w1", protocol.Bye([0, 1]), 0.1)
    s.on_worker_message(EP, b"w2", protocol.Ready("S_A", 2, 2, 1), 0.2)
    assert sorted(data_items(sent(s, 0.2), b"w2")) == [0, 1]
    assert s.tasks["S_A"].in_flight[0].attempts == 0


def test_in_flight_items_are_capped():
    s = make(task_class("S_A", 100), settings=Settings(max_in_flight=3))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 10, 10, 1), 0.0)
    s.dispatch(0.0)
    assert data_items(sent(s)) == [0, 1, 2]


def test_seen_set_keeps_only_out_of_order_ids():
    seen = SeenSet()
    for seq in [0, 1, 3, 4, 2]:
        assert seq not in seen
        seen.add(seq)
    assert seen.low == 5 and seen.above == set()
    seen.add(7)
    assert 7 in seen and 6 not in seen and 4 in seen and seen.above == {7}
    for seq in range(100_000):
        seen.add(seq)
    assert seen.low == 100_000 and seen.above == set()


def started_with_a_time_limit(n: int) -> Scheduler:
    """A started run of ``n`` items of S_A whose item time limit is 1 s."""
    limited = task_class("S_A", n)
    limited.item_time_limit_s = 1.0
    s = make(limited)
    s.start({}, 0.0)
    return s


def test_item_over_its_time_limit_is_handed_out_again():
    s = started_with_a_time_limit(1)
    s.on_worker_message(EP, b"slow", protocol.Ready("S_A", 1, 1, 1), 0.0)
    s.dispatch(0.0)
    assert data_items(sent(s), b"slow") == [0]
    s.on_worker_message(EP, b"fast", protocol.Ready("S_A", 1, 1, 1), 0.5)
    s.on_worker_message(EP, b"hb", protocol.Heartbeat(b"slow"), 1.4)
    s.tick(1.5)
    s.dispatch(1.5)
    assert data_items(sent(s), b"fast") == [0]
    assert s.tasks["S_A"].retries == 1


def test_item_whose_workers_keep_dying_fails_after_max_deaths_not_max_attempts():
    s = make(task_class("S_A", 1), settings=replace(SETTINGS, max_deaths=3))
    s.start({}, 0.0)
    now = 0.0
    for death in range(3):
        wid = f"w{death}".encode()
        s.on_worker_message(EP, wid, protocol.Ready("S_A", 1, 1, 1), now)
        assert data_items(sent(s, now), wid) == [0]
        for _ in range(5):  # the distributor ticks every second; the worker is silent
            now += 1.0
            s.tick(now)  # silent for over 3 s: dead, and item 0 with it
    assert s.done
    (failure,) = s.summary(False)["failed"]
    assert failure["seq"] == 0 and failure["deaths"] == 3 and failure["attempts"] == 0
    assert failure["error"] == "worker died (3 times)"


def test_a_distributor_that_was_stalled_does_not_blame_its_workers():
    s = make(task_class("S_A", 2))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 2, 2, 1), 0.0)
    assert data_items(sent(s)) == [0, 1]
    s.tick(1.0)
    s.tick(9.0)  # 8 s without a tick: we were stalled (a huge message, a swap storm)
    assert b"w1" in s.workers and s.tasks["S_A"].retries == 0
    for now in (10.0, 11.0, 12.0, 13.0):  # now it really is silent
        s.tick(now)
    assert b"w1" not in s.workers and s.tasks["S_A"].retries == 2


def test_a_peer_asking_for_everything_gets_a_small_window_until_it_delivers():
    s = make(task_class("S_A", 1000), settings=replace(SETTINGS, initial_window=4))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"greedy", protocol.Ready("S_A", 100_000, 100_000, 1), 0.0)
    assert data_items(sent(s)) == [0, 1, 2, 3]
    ack(s, "S_A", [0, 1], 0.1, by=b"greedy")
    s.dispatch(0.1)
    assert data_items(sent(s, 0.1)) == [4, 5, 6, 7]  # two done, two more earned
    assert s.workers[b"greedy"].workers[b"greedy"].capacity == SETTINGS.max_credit


def test_only_a_worker_that_answered_welcome_gets_items():
    s = make(task_class("S_A", 3))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"mute", protocol.Ready("S_A", 3, 3, 1), 0.0)
    s.dispatch(0.0)
    assert data_items(_peek(s)) == []  # welcomed, but it has not answered
    s.on_worker_message(EP, b"mute", protocol.Credit(0), 0.1)
    s.dispatch(0.1)
    assert data_items(_peek(s)) == [0, 1, 2]


def _peek(s):
    return [
        (ch, ident, protocol.kind_of(r), list(r))
        for ch, ident, frames in s.outbox
        for r in [protocol.decode(frames)]
    ]


def test_item_over_the_adaptive_limit_is_handed_out_again_though_its_worker_beats():
    settings = replace(SETTINGS, item_timeout_factor=5.0, item_timeout_floor_s=2.0)
    s = make(task_class("S_A", 300), settings=settings)
    s.start({}, 0.0)
    s.on_worker_message(EP, b"cut", protocol.Ready("S_A", 1, 1, 1), 0.0)
    s.on_worker_message(EP, b"ok", protocol.Ready("S_A", 1, 1, 1), 0.0)
    out = sent(s)
    stuck = data_items(out, b"cut")
    now = 0.0
    for _ in range(200):  # b"ok" does an item every 0.01 s; b"cut" beats but never delivers
        now += 0.01
        seq = data_items(out, b"ok")[-1]
        ack(s, "S_A", [seq], now, by=b"ok")
        s.on_worker_message(EP, b"ok", protocol.Credit(1), now)
        s.on_worker_message(EP, b"hb", protocol.Heartbeat(b"cut"), now)
        s.dispatch(now)
        out = sent(s, now)
        if int(now * 100) % 100 == 0:
            s.tick(now)
    assert s.tasks["S_A"].timer.limit_s == 2.0  # 5 x 10 ms is under the floor
    assert b"cut" in s.workers  # it is alive...
    assert stuck[0] not in s.tasks["S_A"].in_flight or (
        s.tasks["S_A"].in_flight[stuck[0]].worker != b"cut"
    )  # ...but its item went elsewhere after 2 s


def test_item_msgpack_cannot_carry_fails_at_once_naming_type_and_key():
    class Unpackable(task_class("S_A", 3)):
        def handle(self, data, address, msgtype):
            item = super().handle(data, address, msgtype)
            if item["n"] == 2:
                item["bad"] = {1, 2}  # a set: msgpack cannot carry it
            return item

    s = make(Unpackable)
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 3, 3, 1), 0.0)
    s.dispatch(0.0)
    out = sent(s)
    assert data_items(out, b"w1") == [0, 2]  # the others still go
    assert (COLLECTOR, None, protocol.SKIP, [42, "S_A", 1]) in out
    (failure,) = s.summary(False)["failed"]
    assert failure["seq"] == 1 and failure["attempts"] == 0  # retrying would not help
    assert "task type 'S_A'" in failure["error"] and "['bad']" in failure["error"]
    ack(s, "S_A", [0, 2], 0.1)
    assert s.done


def test_at_the_tail_a_busy_worker_hands_back_what_it_has_not_started():
    s = make(task_class("S_A", 12))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"busy", protocol.Ready("S_A", 12, 12, 2), 0.0)
    assert data_items(sent(s)) == list(range(12))  # all of them, queued at one worker
    s.on_worker_message(EP, b"idle", protocol.Ready("S_A", 4, 4, 2), 0.1)
    out = sent(s, 0.1)
    # 6 each would finish together; the idle one can take 4 (its credit)
    assert (EP, b"busy", protocol.RECALL, [4]) in out
    assert data_items(out) == []
    s.dispatch(0.1)
    assert not [m for m in sent(s, 0.1) if m[2] == protocol.RECALL]  # asked once
    s.on_worker_message(EP, b"busy", protocol.HandBack([11, 10, 9, 8]), 0.2)
    s.on_worker_message(EP, b"busy", protocol.Credit(4), 0.2)  # it could take them again
    s.dispatch(0.2)
    out = sent(s, 0.2)
    assert sorted(data_items(out, b"idle")) == [8, 9, 10, 11] and data_items(out, b"busy") == []
    assert s.tasks["S_A"].retries == 0  # handing back is no failure
    assert not [m for m in sent(s, 0.2) if m[2] == protocol.RECALL]  # 8 and 4: even enough


def test_a_complete_task_evens_out_busy_workers_before_either_idles():
    s = make(task_class("S_A", 30))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"a", protocol.Ready("S_A", 20, 20, 1), 0.0)
    s.on_worker_message(EP, b"b", protocol.Ready("S_A", 20, 10, 1), 0.0)
    s.dispatch(0.0)
    out = sent(s, 0.0)
    assert data_items(out, b"a") == list(range(20)) and data_items(out, b"b") == list(range(20, 30))
    assert not [m for m in out if m[2] == protocol.RECALL]  # b could take nothing yet
    ack(s, "S_A", [20, 21, 22, 23, 24], 0.1)  # b is through half of its items
    s.on_worker_message(EP, b"b", protocol.Credit(5), 0.1)
    s.dispatch(0.1)
    # both still busy, the task complete: a holds 20, b 5; 5 move now (b's credit), not
    # once b has nothing left
    assert (EP, b"a", protocol.RECALL, [5]) in sent(s, 0.1)


def test_a_worker_that_has_started_all_it_holds_is_not_asked_again_and_again():
    s = make(task_class("S_A", 12))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"busy", protocol.Ready("S_A", 12, 12, 2), 0.0)
    sent(s)
    s.on_worker_message(EP, b"idle", protocol.Ready("S_A", 4, 4, 2), 0.1)
    assert (EP, b"busy", protocol.RECALL, [4]) in sent(s, 0.1)
    s.on_worker_message(EP, b"busy", protocol.HandBack([]), 0.2)  # nothing unstarted
    for now in (0.2, 0.3, 0.4):
        s.dispatch(now)
        assert not [m for m in sent(s, now) if m[2] == protocol.RECALL]
    ack(s, "S_A", [0, 1], 0.5, by=b"busy")  # it holds less: still nothing to recall
    s.dispatch(0.5)
    assert not [m for m in sent(s, 0.5) if m[2] == protocol.RECALL]


def _confirm(s, now, *wids):
    """Answer the WELCOMEs waiting in the outbox (the handshake's CREDIT 0), no dispatch."""
    s.outbox.clear()
    for wid in wids:
        s.on_worker_message(EP, wid, protocol.Credit(0), now)


def test_new_workers_get_one_item_per_thread_before_anyone_is_filled():
    s = make(task_class("S_A", 100))
    s.start({}, 0.0)
    for wid in (b"a", b"b"):
        s.on_worker_message(EP, wid, protocol.Ready("S_A", 40, 30, 10), 0.0)
    _confirm(s, 0.0, b"a", b"b")
    assert s.dispatch(0.0, newcomers_first=True)  # more to come: send these first
    out = sent(s)
    assert len(data_items(out, b"a")) == 10 and len(data_items(out, b"b")) == 10
    assert not s.dispatch(0.0, newcomers_first=True)  # now the windows are filled
    out = sent(s)
    assert len(data_items(out, b"a")) == 20 and len(data_items(out, b"b")) == 20


def sized(task_type: str, n: int):
    cls = task_class(task_type, n)
    cls.n_items = n  # a task that declares its size
    return cls


def _ten_each_then_a_asks_for_30(task_cls) -> tuple[Scheduler, list[Any]]:
    """Workers a and b of 10 threads get 10 items each; then a asks for 30 more."""
    s = make(task_cls)
    s.start({}, 0.0)
    for wid in (b"a", b"b"):
        s.on_worker_message(EP, wid, protocol.Ready("S_A", 40, 10, 10), 0.0)
    _confirm(s, 0.0, b"a", b"b")
    s.dispatch(0.0)
    sent(s)
    s.on_worker_message(EP, b"a", protocol.Credit(30), 0.01)
    s.dispatch(0.01)
    return s, sent(s, 0.01)


def test_near_the_end_of_a_sized_task_the_first_to_ask_takes_only_its_share():
    s, out = _ten_each_then_a_asks_for_30(sized("S_A", 60))
    # 40 left + 20 held over 20 threads: 30 each; a asked for 30 more but takes 20
    assert len(data_items(out, b"a")) == 20
    s.on_worker_message(EP, b"b", protocol.Credit(30), 0.02)
    s.dispatch(0.02)
    assert len(data_items(sent(s, 0.02), b"b")) == 20  # the other half of what was left


def test_items_handed_back_go_back_to_their_worker_when_no_other_has_room_for_them():
    # Found at 2 workers x 10 threads on a loaded machine (splits of 517/483 items, one
    # worker idle for 30 ms): the RECALL was decided on what each worker held, results it
    # was still holding back included; by the time the items came back, their worker had
    # sent those results and held fewer than the other, the other had no room under its
    # share, and the items waited while their worker went idle (and no new RECALL was
    # decided while they waited).
    s, _ = _ten_each_then_a_asks_for_30(sized("S_A", 60))  # a: 30 held, b: 10
    a, b = (s.tasks["S_A"].workers[w] for w in (b"a", b"b"))
    ack(s, "S_A", sorted(b.held), 0.015, by=b"b")
    s.on_worker_message(EP, b"b", protocol.Credit(25), 0.02)
    s.dispatch(0.02)
    out = sent(s, 0.02)
    assert len(data_items(out, b"b")) == 20  # the task is complete: a 30, b 20
    assert len(a.held) == 30 and len(b.held) == 20
    assert (EP, b"a", protocol.RECALL, [5]) in out
    ack(s, "S_A", sorted(a.held)[:18], 0.03, by=b"a")  # the results a held back
    s.on_worker_message(EP, b"a", protocol.Credit(18), 0.03)
    back = sorted(a.held)[-5:]
    s.on_worker_message(EP, b"a", protocol.HandBack(back), 0.04)
    # a holds 7, b 20: b (share 1.6 per thread, 16) has no room; a takes them again
    s.dispatch(0.04)
    out = sent(s, 0.04)
    assert sorted(data_items(out, b"a")) == back and data_items(out, b"b") == []
    assert not s.tasks["S_A"].retry
    # with nothing waiting, the tail is evened out again: b, holding 20 to a's 12, is asked
    assert [m for m in out if m[2] == protocol.RECALL] == [(EP, b"b", protocol.RECALL, [4])]


def test_a_task_of_unknown_size_is_handed_out_as_credit_allows():
    _, out = _ten_each_then_a_asks_for_30(task_class("S_A", 60))
    assert len(data_items(out, b"a")) == 30


def test_a_worker_whose_items_ran_over_their_limit_holds_one_at_a_time_and_gets_no_recall():
    # "cut" takes items and its results never reach the collector (a cut link), though it
    # still beats; "good" delivers. Found on a cut link: the fair tail moved "good"'s
    # last items to "cut", one at a time, a time limit each (32 s for 10 items).
    s = started_with_a_time_limit(24)
    s.on_worker_message(EP, b"cut", protocol.Ready("S_A", 10, 10, 1), 0.0)
    assert data_items(sent(s), b"cut") == list(range(10))
    s.on_worker_message(EP, b"good", protocol.Ready("S_A", 20, 10, 1), 0.1)
    assert data_items(sent(s, 0.1), b"good") == list(range(10, 20))
    ack(s, "S_A", range(10, 20), 0.9, by=b"good")
    for now in (1.0, 1.5):
        s.on_worker_message(EP, b"hb", protocol.Heartbeat(b"cut"), now)
        s.on_worker_message(EP, b"hb", protocol.Heartbeat(b"good"), now)
        s.tick(now)  # cut's ten are over their limit at 1.5
    cut = s.tasks["S_A"].workers[b"cut"]
    assert not cut.held
    s.on_worker_message(EP, b"cut", protocol.Credit(10), 1.5)
    s.dispatch(1.5)
    assert len(data_items(sent(s, 1.5), b"cut")) == 1  # one, not a window's worth
    s.on_worker_message(EP, b"good", protocol.Credit(13), 1.6)
    s.dispatch(1.6)
    held = sorted(data_items(sent(s, 1.6), b"good"))
    assert len(held) == 13 and s.tasks["S_A"].task.is_complete
    # the task is complete, good holds 13 and cut 1 with credit for 9 more: no RECALL
    # moves good's items to cut
    assert s.tasks["S_A"].workers[b"cut"].credit == 9
    assert not [m for m in sent(s, 1.6) if m[2] == protocol.RECALL]
    # and what good hands back (a stop, a RECALL) goes back to it, not to cut
    s.on_worker_message(EP, b"good", protocol.HandBack(held[-2:]), 1.7)
    s.on_worker_message(EP, b"good", protocol.Credit(2), 1.7)
    s.dispatch(1.7)
    assert sorted(data_items(sent(s, 1.7), b"good")) == held[-2:]
