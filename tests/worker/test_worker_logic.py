"""A worker's decisions, driven directly: no sockets, no threads."""

from __future__ import annotations

import pytest

from zmqpipeline import protocol
from zmqpipeline.worker.logic import CreditWindow, ResultBatch, WorkerLogic

codec = protocol.Codec(1 << 20)


def make(slots=1, low=1, high=4, window_s=0.02):
    return WorkerLogic("T", codec, CreditWindow(slots, low, high, window_s))


def sent(logic):
    records = [protocol.decode(frames) for frames in logic.to_distributor]
    logic.to_distributor.clear()
    return records


def test_ready_offers_threads_plus_prefetch_and_the_capacity():
    logic = make(slots=4, low=1, high=8)
    logic.ready()
    assert sent(logic) == [protocol.Ready("T", 12, 8, 4)]  # a second round per thread


def test_welcome_completes_the_handshake_and_data_of_another_run_is_ignored():
    logic = make()
    assert logic.on_message(protocol.Welcome(7, {"m": 1}, {})) is True
    assert sent(logic) == [protocol.Credit(0)] and logic.metadata == {"m": 1}
    logic.on_message(protocol.Data(6, [[0, {}]]))
    assert not logic.queue
    logic.on_message(protocol.Data(7, [[0, {"a": 1}], [1, {}]]))
    assert list(logic.queue) == [(0, {"a": 1}), (1, {})]


def test_reset_drops_what_is_queued_and_announces_again():
    logic = make()
    logic.on_message(protocol.Welcome(7, {}, {}))
    logic.on_message(protocol.Data(7, [[0, {}]]))
    sent(logic)
    logic.on_message(protocol.Reset())
    assert not logic.queue and not logic.accepted
    assert [type(r) for r in sent(logic)] == [protocol.Ready]


def test_hand_back_returns_the_queued_items_and_more():
    logic = make()
    logic.on_message(protocol.Welcome(7, {}, {}))
    logic.on_message(protocol.Data(7, [[3, {}], [4, {}]]))
    assert protocol.decode(logic.hand_back([9])) == protocol.Bye([3, 4, 9])
    assert not logic.queue


def test_end_ends():
    logic = make()
    logic.on_message(protocol.End(7, {}))
    assert logic.ended


def test_credit_window_asks_for_items_in_chunks_as_they_get_faster():
    window = CreditWindow(slots=1, low=1, high=64, window_s=0.02)
    assert window.announce(held=0) == 2  # one slot + the low prefetch
    for _ in range(20):
        window.observe(0.0001)  # 100 µs items: 20 ms holds 64 of them (capped)
    assert window.prefetch() == 64
    asked = window.request(held=0)
    assert asked == 1 + 64 - 2  # what it lacks beyond the 2 outstanding
    window.received(asked)
    assert window.request(held=63) == 0  # not worth a message for less than a quarter


def test_credit_window_stays_low_for_slow_items():
    window = CreditWindow(slots=2, low=1, high=64, window_s=0.02)
    window.observe(0.5)
    assert window.prefetch() == 1
    window.announce(held=0)
    assert window.request(held=0) == 0  # the 3 announced cover 2 slots + 1


def test_credit_covers_two_result_lingers_from_the_first_item_timed():
    # 10 threads of 10 ms items: results linger 100 ms, so one request must last ~220 ms
    window = CreditWindow(slots=10, low=1, high=64, window_s=0.02, linger_s=0.1)
    window.observe(0.01)
    assert window.prefetch() == 64  # not 20: 20 ms alone
    assert CreditWindow(slots=1, low=1, high=64, window_s=0.02, linger_s=0.1).prefetch() == 1
    window.linger_s = 0.0
    assert window.prefetch() == 20


def test_credit_rides_with_a_batch_once_a_quarter_of_the_prefetch_is_missing():
    # a stage's source sends a batch every 2 items; its credit goes every 5 or 6
    window = CreditWindow(slots=1, low=1, high=64, window_s=0.02, linger_s=0.1)
    window.observe(0.01)
    assert window.prefetch() == 22
    window.announce(held=0)
    window.received(23)
    assert window.request(held=21, eager=True) == 0  # 2 done: not worth a message
    assert window.request(held=17, eager=True) == 6
    assert window.request(held=11, eager=False) == 0  # 6 more missing: not yet half
    assert window.request(held=6, eager=False) == 11


def test_finished_items_free_their_slot_and_feed_the_window():
    logic = make()
    logic.busy = 1
    logic.finished(0.01)
    assert logic.busy == 0 and logic.credit.item_s == 0.01


def test_a_result_batch_is_due_when_idle_full_or_lingering():
    batch = ResultBatch(max_items=3, max_linger_s=0.1)
    assert not batch.due(0.0, idle=True)  # nothing held
    assert not batch.add(0, None, 0.0, run=7, item_s=0.01)  # due at 0.1 - 0.01
    assert batch.due(0.0, idle=True)  # a lone item is never held back
    assert not batch.due(0.0, idle=False)
    assert batch.linger(0.01) == 0.1 and batch.linger(0.0001) == 0.002  # count batches
    assert batch.linger(1.0) == 0.1  # at most max_linger_s
    assert batch.due(0.0901, idle=False)  # the next item would make the oldest late
    assert not batch.add(1, {"x": 1}, 0.001, run=7, item_s=0.01)
    assert batch.add(2, None, 0.002, run=7, item_s=0.01)  # full
    assert batch.take() == [(0, None), (1, {"x": 1}), (2, None)]
    assert not batch and batch.wait_s(1.0) is None
    batch.add(3, None, 2.0, run=8, item_s=0.01)
    assert batch.run == 8 and batch.wait_s(2.0) == pytest.approx(0.09)
