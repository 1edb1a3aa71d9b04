"""Handing items out, driven directly: credit, the window of a new peer, one item per
thread first, each worker's share near the end, and evening out at the tail."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from support.scheduling import EP, SETTINGS, ack, data_items, make, sent, task_class
from support.stages import join, open_class

from zmqpipeline import Settings, protocol
from zmqpipeline.distributor.scheduler import Scheduler


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


def test_in_flight_items_are_capped():
    s = make(task_class("S_A", 100), settings=Settings(max_in_flight=3))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 10, 10, 1), 0.0)
    s.dispatch(0.0)
    assert data_items(sent(s)) == [0, 1, 2]


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


def test_a_burst_of_an_open_ended_task_is_split_among_all_its_workers():
    """20 items arriving at once (jobs due together) go 7, 7, 6, not all to the first
    worker with room; a worker with no credit now keeps its share waiting for it."""
    s = make(open_class("ST_P"))
    s.start({}, 0.0)
    for wid in (b"a", b"b", b"c"):
        join(s, EP, wid, "ST_P", capacity=50)
    sent(s)
    s.stages.enter(s.tasks["ST_P"], [{"i": i} for i in range(20)])
    s.dispatch(0.1)
    out = sent(s, 0.1)
    assert sorted(len(data_items(out, w)) for w in (b"a", b"b", b"c")) == [6, 7, 7]
    s.stages.enter(s.tasks["ST_P"], [{"i": i} for i in range(20, 23)])
    s.workers[b"c"].workers[b"c"].credit = 0  # c asks for nothing now
    s.dispatch(0.2)
    out = sent(s, 0.2)
    # all three end with 23 / 3 = 7.67 at most: the one of a and b that held 6 takes 2
    assert sorted(len(data_items(out, w)) for w in (b"a", b"b")) == [1, 2]
    assert data_items(out, b"c") == [] and not s.stages.backlog["ST_P"]


def test_the_share_of_a_burst_counts_what_each_worker_already_holds():
    """40 items arrive while only a has credit: a takes its half (20); when b asks, b gets
    the other 20 and a nothing more (a's 20 and half of what is left would give a 30)."""
    s = make(open_class("ST_P"))
    s.start({}, 0.0)
    for wid in (b"a", b"b"):
        join(s, EP, wid, "ST_P", capacity=50)
    sent(s)
    b = s.workers[b"b"].workers[b"b"]
    credit, b.credit = b.credit, 0
    s.stages.enter(s.tasks["ST_P"], [{"i": i} for i in range(40)])
    s.dispatch(0.1)
    out = sent(s, 0.1)
    assert len(data_items(out, b"a")) == 20 and data_items(out, b"b") == []
    b.credit = credit
    s.dispatch(0.2)
    out = sent(s, 0.2)
    assert len(data_items(out, b"b")) == 20 and data_items(out, b"a") == []
