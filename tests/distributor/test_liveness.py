"""Dead workers, time limits and retries, driven directly with a hand-held clock: a silent
or leaving worker's items go elsewhere, an item over its limit goes out again, an item
fails for good after its attempts."""

from __future__ import annotations

from dataclasses import replace

import pytest
from support import acks
from support.scheduling import EP, SETTINGS, ack, data_items, make, sent, task_class

from zmqpipeline import protocol
from zmqpipeline.distributor.scheduler import COLLECTOR, Scheduler


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
