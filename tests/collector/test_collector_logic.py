"""The collector's decisions, driven directly: no sockets, a hand-held clock."""

from __future__ import annotations

import logging

import pytest
from support import acks

from zmqpipeline import Settings, protocol
from zmqpipeline.collector import CollectorLogic
from zmqpipeline.runtime.runtime import UserCodeError
from zmqpipeline.runtime.seen import SeenSet
from zmqpipeline.runtime.transport import DropCounter

SETTINGS = Settings(heartbeat_interval_s=1.0, liveness_misses=3)


D1, D2, W = b"dist-1", b"dist-2", b"host:1:w"


def make(raise_on=()):
    handled: list[tuple[str, int, dict]] = []

    def collect(task_type, seq, result):
        if seq in raise_on:
            raise UserCodeError(ValueError("no"), "ValueError: no")
        handled.append((task_type, seq, result))
        return {"n": len(handled)}

    logic = CollectorLogic(SETTINGS, collect, DropCounter(logging.getLogger("t"), "t"))
    return logic, handled


def out(logic):
    """Decode and clear the outbox: [(to, record)]."""
    sent = [(to, protocol.decode(frames)) for to, frames in logic.outbox]
    logic.outbox.clear()
    return sent


def result(seq, run=7, task_type="T", worker=W):
    return protocol.Result(run, task_type, worker, [[seq, {"seq": seq}]])


def started(logic, now=0.0, sender=D1, run=7):
    logic.on_distributor(sender, protocol.Ping(run), now)
    logic.on_distributor(sender, protocol.Start(run, {"m": 1}, ["T"], [], []), now)
    out(logic)


def test_ping_is_answered_with_hello_and_start_adopts_the_distributor():
    logic, _ = make()
    logic.on_distributor(D1, protocol.Ping(7), 0.0)
    assert out(logic) == [(D1, protocol.Hello(logic.collector_id))]
    assert logic.distributor is None  # a PING alone makes no one ours
    logic.on_distributor(D1, protocol.Start(7, {"m": 1}, ["T"], [], []), 0.1)
    assert logic.distributor == D1 and logic.run == 7 and logic.metadata == {"m": 1}


def test_each_id_is_handled_once_and_a_duplicate_is_acked_again():
    logic, handled = make()
    started(logic)
    for seq in (0, 1, 0):
        logic.on_result(result(seq))
    logic.flush()
    [(to, ack)] = out(logic)
    entries = acks.entries(ack.groups)
    assert to == D1 and [(tt, seq) for tt, seq, *_ in entries] == [
        ("T", 0),
        ("T", 1),
        ("T", 0),
    ]
    assert [seq for _, seq, _ in handled] == [0, 1] and logic.duplicates == 1
    assert entries[0][2] == {"n": 1} and entries[2][2] is None
    assert [entry[6] for entry in entries] == [True, True, False]  # the last: a duplicate
    assert all(entry[4] == W for entry in entries)  # who executed it, for the report


def test_results_before_start_wait_and_are_collected_at_start():
    logic, handled = make()
    logic.on_result(result(0))
    logic.on_result(result(1, run=99))  # another run: dropped at START
    assert handled == []
    started(logic)
    assert [seq for _, seq, _ in handled] == [0]
    assert logic.drops.counts["result of another run"] == 1


def test_results_held_until_start_are_acked_at_start():
    # Found by tests/collector/test_collector_metadata.py in CI: a result read before
    # START was collected at START, but its ACK waited for the next result to be read
    # (the collector flushes ACKs after reading results, not after START).
    logic, handled = make()
    logic.on_result(result(0))
    logic.on_distributor(D1, protocol.Ping(7), 0.0)
    logic.on_distributor(D1, protocol.Start(7, {"m": 1}, ["T"], [], []), 0.0)
    sent = [record for _, record in out(logic) if isinstance(record, protocol.Ack)]
    assert [seq for _, seq, _ in handled] == [0]
    assert [[entry[1] for entry in acks.entries(ack.groups)] for ack in sent] == [[0]]


def test_the_runs_metadata_is_handed_on_before_any_of_its_results_is_collected():
    # CI, Python 3.10: the collector's handle_collection saw no metadata for results read
    # before START, or in the same poll as START (the Collector copied it after the loop).
    logic, handled = make()
    starts: list[tuple[dict, int]] = []  # the metadata, and the results collected by then
    logic.on_start = lambda metadata: starts.append((metadata, len(handled)))
    logic.on_result(result(0))  # early: held until START
    assert starts == [] and handled == []
    started(logic)
    logic.on_result(result(1))
    assert starts == [({"m": 1}, 0)]
    assert [seq for _, seq, _ in handled] == [0, 1]


def test_skip_and_end_count_only_from_our_distributor():
    logic, handled = make()
    started(logic)
    logic.on_distributor(D2, protocol.Skip(7, "T", 0), 0.5)  # a stranger: ignored
    logic.on_distributor(D2, protocol.End(7, {}), 0.5)
    assert logic.end is None
    logic.on_result(result(0))
    assert [seq for _, seq, _ in handled] == [0]  # not skipped by the stranger
    logic.on_distributor(D1, protocol.Skip(7, "T", 1), 0.6)
    logic.on_result(result(1))
    assert [seq for _, seq, _ in handled] == [0]  # skipped by ours
    logic.on_distributor(D1, protocol.End(7, {"done": True}), 0.7)
    assert logic.end == {"done": True}


def test_a_second_distributor_is_ignored_while_ours_is_alive_and_followed_after():
    logic, _ = make()
    started(logic, now=0.0)
    logic.on_distributor(D2, protocol.Ping(8), 1.0)
    logic.on_distributor(D2, protocol.Start(8, {}, ["T"], [], []), 1.0)
    assert out(logic) == [] and logic.run == 7 and logic.distributor == D1
    logic.on_distributor(D1, protocol.Ping(7), 2.0)  # ours beats
    out(logic)
    logic.on_distributor(D2, protocol.Start(8, {}, ["T"], [], []), 4.0)  # 2 s < 3 s liveness
    assert logic.distributor == D1
    logic.on_distributor(D2, protocol.Start(8, {}, ["T"], [], []), 5.5)  # ours silent 3.5 s
    assert logic.distributor == D2 and logic.run == 8


def test_an_error_in_handle_collection_is_reported_on_the_ack_and_not_marked_seen():
    logic, _ = make(raise_on={0})
    started(logic)
    logic.on_result(result(0))
    logic.flush()
    [(_, ack)] = out(logic)
    assert acks.entries(ack.groups)[0][3] == "ValueError: no"
    assert 0 not in logic.seen["T"]


def test_acks_for_an_unreachable_distributor_are_bounded():
    logic, _ = make()
    started(logic)
    for seq in range(10_050):
        logic.on_result(result(seq))
        logic.flush()
    assert len(logic.outbox) == 10_000
    assert logic.drops.counts["ACK for an unreachable distributor, queue full"] == 50


@pytest.mark.parametrize("order", [[0, 1, 2], [2, 0, 1], [1, 2, 0]])
def test_seen_set_keeps_only_out_of_order_ids(order):
    seen = SeenSet()
    for seq in order:
        seen.add(seq)
    assert seen.low == 3 and not seen.above and all(s in seen for s in range(3))


def test_a_result_counts_only_with_the_token_of_its_own_items_and_worker():
    """The one-token path of the check (a lone item's result, a batch's results): a token
    for another item, another worker, a made-up one or none, or one that does not cover
    every result, and the RESULT is refused whole and counted."""
    logic, handled = make()
    maker = protocol.ItemTokens(protocol.new_key())
    logic.on_distributor(D1, protocol.Ping(7), 0.0)
    logic.on_distributor(D1, protocol.Start(7, {}, ["T"], [], [], maker.key), 0.0)
    out(logic)
    (mine,) = maker.tokens("T", W, [5])
    (theirs,) = maker.tokens("T", b"host:2:w", [6])
    refused = [
        maker.tokens("T", W, [4])[0],  # another of its items
        theirs,  # another worker's item
        mine[:12] + bytes(8),  # its item, a made-up hash
        b"",  # none
    ]
    for token in refused:
        logic.on_result(protocol.Result(7, "T", W, [[5, {"x": 1}]], token))
    logic.on_result(protocol.Result(7, "T", W, [[6, {"x": 1}]], theirs))  # theirs, claimed
    assert handled == [] and logic.forged == 5
    logic.on_result(protocol.Result(7, "T", W, [[5, {"x": 1}]], mine))
    assert handled == [("T", 5, {"x": 1})] and logic.forged == 5
    # One token beside a batch's results: it must cover every one of them.
    (batch,) = maker.tokens("T", W, list(range(10, 20)))
    logic.on_result(protocol.Result(7, "T", W, [[s, {}] for s in (12, 19, 20)], batch))
    assert len(handled) == 1 and logic.forged == 8
    logic.on_result(protocol.Result(7, "T", W, [[s, {}] for s in (19, 10, 14)], batch))
    assert [seq for _, seq, _ in handled] == [5, 19, 10, 14]
