"""The scheduler resumed from a crash journal: acked items skipped, those in flight handed
out again, a task's own numbering replayed, failures taken back."""

from __future__ import annotations

from typing import Any

import pytest
from support import acks
from support.scheduling import SETTINGS, data_items, sent, task_class

from zmqpipeline import (
    ConfigurationError,
    protocol,
)
from zmqpipeline.distributor.scheduler import Scheduler
from zmqpipeline.journal.run import DistributorJournal

# -- the scheduler, resumed --------------------------------------------------------------


def _journaled(tmp_path, classes, acked, next_seq, finished=()):
    journal = DistributorJournal(tmp_path / "d.sqlite")
    journal.begin(42, {c.task_type: c.__name__ for c in classes})
    for task_type, seqs in acked.items():
        for seq in seqs:
            journal.acked(task_type, seq)
    for task_type, n in next_seq.items():
        journal.handed_out(task_type, n - 1)
    for task_type in finished:
        journal.task_finished(task_type)
    journal.close(complete=False)
    journal = DistributorJournal(tmp_path / "d.sqlite")
    loaded = journal.load()
    assert loaded is not None
    return journal, loaded


def _resumed(journal, loaded, *classes) -> Scheduler:
    s = Scheduler([cls() for cls in classes], SETTINGS, run=loaded.run)
    journal.adopt(loaded)
    s.journal = journal
    s.resume_from(loaded)
    s.on_collector_hello(b"collector", 0.0)
    return s


def _join(s: Scheduler, wid: bytes, endpoint: str, task_type: str, capacity: int = 100):
    s.on_worker_message(endpoint, wid, protocol.Ready(task_type, capacity, capacity, 1), 0.0)


def test_resumed_task_skips_acked_items_and_hands_out_those_in_flight(tmp_path):
    cls = task_class("S_A", 20)
    journal, loaded = _journaled(tmp_path, [cls], {"S_A": [*range(10), 12]}, {"S_A": 15})
    s = _resumed(journal, loaded, cls)
    s.start({}, 0.0)
    _join(s, b"w1", cls.endpoint, "S_A")
    assert data_items(sent(s)) == [10, 11, *range(13, 20)]
    resume = s.resuming["S_A"]
    assert (resume.skipped, resume.re_handed_out) == (11, 4)
    assert s.tasks["S_A"].collected == 11
    s.on_ack(acks.plain("S_A", [10, 11, *range(13, 20)]), 1.0)
    assert s.done
    journal.close(complete=True)


def _jumping(n: int, jumps: list[int]) -> type:
    """A task of ``n`` items whose ``resume(next_seq)`` jumps ahead, noted in ``jumps``."""

    class Jumping(task_class("S_A", n)):  # type: ignore[misc]
        def resume(self, next_seq):
            jumps.append(next_seq)
            self.count = next_seq

    return Jumping


def test_resume_next_seq_jumps_over_the_watermark(tmp_path):
    jumps: list[int] = []
    Jumping = _jumping(20, jumps)
    journal, loaded = _journaled(tmp_path, [Jumping], {"S_A": [*range(10), 12]}, {"S_A": 13})
    s = _resumed(journal, loaded, Jumping)
    s.start({}, 0.0)
    _join(s, b"w1", Jumping.endpoint, "S_A")
    assert jumps == [10]
    assert data_items(sent(s)) == [10, 11, *range(13, 20)]
    journal.close(complete=False)


def test_a_task_that_is_not_resumable_is_refused_by_name(tmp_path):
    base = task_class("S_A", 20)

    class Fragile(base):  # type: ignore[misc, valid-type]
        resumable = False

    journal, loaded = _journaled(tmp_path, [Fragile], {"S_A": [0]}, {"S_A": 3})
    with pytest.raises(ConfigurationError, match=r"Fragile \(S_A\) is not resumable"):
        _resumed(journal, loaded, Fragile)
    journal.close(complete=False)


def test_finished_task_is_not_run_again_and_its_dependant_starts_at_once(tmp_path):
    first, second = task_class("S_A", 5), task_class("S_B", 3, deps=["S_A"])
    journal, loaded = _journaled(
        tmp_path, [first, second], {"S_A": range(5)}, {"S_A": 5}, finished=["S_A"]
    )
    s = _resumed(journal, loaded, first, second)
    s.start({}, 0.0)
    assert s.tasks["S_A"].finished and s.tasks["S_B"].active
    _join(s, b"wa", first.endpoint, "S_A")
    kinds = [kind for _, _, kind, _ in sent(s)]
    assert (
        protocol.END in kinds and protocol.DATA not in kinds
    )  # the first task's worker is told to stop
    assert s.tasks["S_A"].task.count == 0  # handle() never called
    journal.close(complete=False)


def test_late_ack_of_an_item_from_before_the_crash_is_kept(tmp_path):
    cls = task_class("S_A", 6)
    journal, loaded = _journaled(tmp_path, [cls], {"S_A": [0]}, {"S_A": 4})
    s = _resumed(journal, loaded, cls)
    s.start({}, 0.0)
    # its result reached the collector
    s.on_ack(acks.plain("S_A", [2], b"w-old"), 0.0)
    assert s.stale_acks == 0
    _join(s, b"w1", cls.endpoint, "S_A")
    assert data_items(sent(s)) == [1, 3, 4, 5]
    journal.close(complete=False)


def test_an_item_re_driven_before_a_crash_is_neither_lost_nor_shifts_the_others(tmp_path):
    """retry_failed gives a failed item a new seq from the task's own numbering; a resumed
    run replays handle() and must number its items as before, skip the re-driven one if it
    was collected, and no longer report the original as failed."""
    from zmqpipeline.distributor.control import ControlLogic

    cls = task_class("S_A", 6)
    journal = DistributorJournal(tmp_path / "d.sqlite")
    journal.begin(42, {"S_A": cls.__name__})
    s = Scheduler([cls()], SETTINGS, run=42)
    s.journal = journal
    s.on_collector_hello(b"collector", 0.0)
    s.start({}, 0.0)
    _join(s, b"w1", cls.endpoint, "S_A", capacity=1)
    now, handed = 0.0, _payloads(sent(s))
    for _ in range(SETTINGS.max_attempts):  # item 0 raises every time: it fails for good
        s.on_worker_message(cls.endpoint, b"w1", protocol.Fail(0, "ValueError: bad", ["E"]), now)
        s.on_worker_message(cls.endpoint, b"w1", protocol.Credit(1), now)
        now += 3.0
        s.dispatch(now)
        handed |= _payloads(sent(s, now))
    for seq in (1, 2):  # the next two are collected
        assert handed[seq] == {"n": seq + 1, "meta": None}
        s.on_ack(acks.plain("S_A", [seq]), now)
        s.on_worker_message(cls.endpoint, b"w1", protocol.Credit(1), now)
        s.dispatch(now)
        handed |= _payloads(sent(s, now))
    ok, body = ControlLogic(s, "ipc://c.ipc").handle(
        protocol.Control(1, "retry_failed", {"ids": ["S_A/0"]}), now
    )
    assert ok and body["retried"] == [{"item_id": "S_A/0", "new_item_id": "S_A/4"}]
    s.on_ack(acks.plain("S_A", [3]), now)  # seq 3 was handle()'s 4th item
    s.on_worker_message(cls.endpoint, b"w1", protocol.Credit(1), now)
    s.dispatch(now)
    handed |= _payloads(sent(s, now))
    assert handed[4] == {"n": 1, "meta": None}  # the re-driven item
    s.on_ack(acks.plain("S_A", [4]), now)  # collected; then the crash
    s.on_worker_message(cls.endpoint, b"w1", protocol.Credit(1), now)
    s.dispatch(now)
    handed |= _payloads(sent(s, now))
    assert handed[5] == {"n": 5, "meta": None}  # in flight at the crash
    journal, _, s = _crashed_and_resumed(tmp_path, journal, cls)
    again = _payloads(sent(s))
    assert again == {5: {"n": 5, "meta": None}, 6: {"n": 6, "meta": None}}
    assert s.tasks["S_A"].failed == []  # S_A/0 was re-driven as S_A/4 and collected
    assert s.tasks["S_A"].collected == 4
    s.on_ack(acks.plain("S_A", list(again)), 1.0)
    assert s.done and s.tasks["S_A"].collected == 6
    journal.close(complete=True)


def _payloads(messages) -> dict[int, Any]:
    return {
        seq: payload
        for _, _, kind, body in messages
        if kind == protocol.DATA
        for seq, payload in body[1]
    }


def _failed_then_two_collected(tmp_path, cls, data):
    """A journal of S_A: seq 0 failed for good (its data ``data``), 1 and 2 collected."""
    journal = DistributorJournal(tmp_path / "d.sqlite")
    journal.begin(42, {"S_A": cls.__name__})
    failure = {"task_type": "S_A", "seq": 0, "item_id": "S_A/0", "data": data}
    journal.failed(failure)
    for seq in (1, 2):
        journal.handed_out("S_A", seq)
        journal.acked("S_A", seq)
    return journal, failure


def _crashed_and_resumed(tmp_path, journal, cls):
    """Close ``journal`` as a crash leaves it; resume a scheduler of ``cls`` from it, with
    a worker joined."""
    journal.close(complete=False)
    journal = DistributorJournal(tmp_path / "d.sqlite")
    loaded = journal.load()
    assert loaded is not None
    s = _resumed(journal, loaded, cls)
    s.start({}, 0.0)
    _join(s, b"w1", cls.endpoint, "S_A")
    return journal, loaded, s


def test_a_task_that_jumps_ahead_is_told_how_many_items_handle_made_not_the_seq(tmp_path):
    jumps: list[int] = []
    Jumping = _jumping(8, jumps)
    journal, failure = _failed_then_two_collected(tmp_path, Jumping, {"n": 1})
    journal.redriven(failure, 3)  # S_A/0 went out again as seq 3, and was collected
    journal.acked("S_A", 3)
    journal.handed_out("S_A", 4)
    journal.acked("S_A", 4)
    journal, _, s = _crashed_and_resumed(tmp_path, journal, Jumping)
    assert jumps == [4]  # seqs 0-4 are done; handle() made 4 of them (3 was a re-drive)
    assert _payloads(sent(s)) == {
        5: {"n": 5, "meta": None},
        6: {"n": 6, "meta": None},
        7: {"n": 7, "meta": None},
        8: {"n": 8, "meta": None},
    }
    assert s.tasks["S_A"].failed == []
    journal.close(complete=False)


def test_a_re_driven_item_not_collected_before_the_crash_goes_out_again(tmp_path):
    cls = task_class("S_A", 3)
    journal, failure = _failed_then_two_collected(tmp_path, cls, {"n": 1, "x": 0})
    journal.task_finished("S_A")
    journal.redriven(failure, 3)  # reopened, handed out, and then the crash
    journal, loaded, s = _crashed_and_resumed(tmp_path, journal, cls)
    assert "S_A" not in loaded.finished
    assert _payloads(sent(s, 5.0)) == {3: {"n": 1, "x": 0}}  # the re-driven item alone
    assert s.tasks["S_A"].failed == [] and s.resuming["S_A"].re_handed_out == 1
    s.on_ack(acks.plain("S_A", [3]), 6.0)
    assert s.done and s.tasks["S_A"].collected == 3
    assert list(s.latencies) == [1.0]  # handed out at 5, ACKed at 6
    journal.close(complete=True)


def test_a_failure_taken_back_is_gone_from_the_journal_written_or_not(tmp_path):
    journal = DistributorJournal(tmp_path / "d.sqlite")
    journal.begin(42, {"S_A": "A"})
    written = {"task_type": "S_A", "seq": 0, "item_id": "S_A/0", "data": {"x": [1, "a"]}}
    kept = {"task_type": "S_A", "seq": 1, "item_id": "S_A/1", "data": {}}
    buffered = {"task_type": "S_A", "seq": 2, "item_id": "S_A/2", "data": {}}
    journal.failed(written)
    journal.failed(kept)
    journal.commit()
    journal.failed(buffered)
    journal.unfailed(written)  # its result was collected after all
    journal.unfailed(buffered)
    journal.close(complete=False)
    loaded = DistributorJournal(tmp_path / "d.sqlite").load()
    assert loaded is not None
    assert [f["item_id"] for f in loaded.failed] == ["S_A/1"]
    assert loaded.collected["S_A"] == 2 and loaded.done["S_A"].low == 3
