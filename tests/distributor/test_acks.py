"""How the scheduler settles ACKs, driven directly: duplicates, groups that mix errors and
collections, and the credit each ACK gives back."""

from __future__ import annotations

from support import acks
from support.scheduling import EP, EP_B, ack, data_items, make, sent, task_class

from zmqpipeline import protocol


def test_duplicate_and_unknown_acks_are_ignored():
    s = make(task_class("S_A", 2))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 1, 1, 1), 0.0)
    sent(s)
    ack(s, "S_A", [0], 0.1)
    ack(s, "S_A", [0, 99], 0.1)
    s.on_ack(acks.groups([["NO_SUCH_TYPE", 0, None, None, b"w1", None, True]]), 0.1)
    assert s.tasks["S_A"].collected == 1 and s.stale_acks == 3 and not s.done


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
