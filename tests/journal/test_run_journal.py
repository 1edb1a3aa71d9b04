"""The distributor's crash journal alone: a watermark and the set above it, batched
commits, a journal of the other role or of a finished run."""

from __future__ import annotations

import pytest
from support.journals import query_rows
from support.pipelines import make_task

from zmqpipeline import (
    ConfigurationError,
    Distributor,
)
from zmqpipeline.journal.collector import CollectorJournal
from zmqpipeline.journal.run import DistributorJournal, run_is_complete

# -- the distributor's journal, alone ----------------------------------------------------


def test_distributor_journal_keeps_a_watermark_and_the_set_above_it(tmp_path):
    path = tmp_path / "d.sqlite"
    journal = DistributorJournal(path)
    assert journal.load() is None
    journal.begin(7, {"S_A": "A", "S_B": "B"})
    journal.started({"m": 1})
    for seq in range(10):
        journal.handed_out("S_A", seq)
    for seq in (0, 1, 2, 4, 5, 8):
        journal.acked("S_A", seq)
    journal.failed({"task_type": "S_A", "seq": 3, "error": "boom", "data": {"x": b"\x00"}})
    journal.task_finished("S_B")
    journal.close(complete=False)
    rows = query_rows(path, "SELECT seq FROM done WHERE task_type = 'S_A' ORDER BY seq")
    assert rows == [8]  # 0-5 folded into the watermark (3 failed for good)

    journal = DistributorJournal(path)
    loaded = journal.load()
    assert loaded is not None
    assert (loaded.run, loaded.tasks, loaded.metadata, loaded.complete) == (
        7,
        {"S_A": "A", "S_B": "B"},
        {"m": 1},
        False,
    )
    done = loaded.done["S_A"]
    assert (done.low, done.above) == (6, {8})
    assert loaded.next_seq["S_A"] == 10 and loaded.collected["S_A"] == 6
    assert loaded.finished == {"S_B"}
    assert [f["seq"] for f in loaded.failed] == [3]
    journal.adopt(loaded)
    journal.acked("S_A", 6)
    journal.acked("S_A", 7)
    journal.close(complete=True)
    assert run_is_complete(path) == 7
    again = DistributorJournal(path)
    loaded = again.load()
    again.close(complete=False)
    assert loaded is not None and loaded.done["S_A"].low == 9 and loaded.complete


def test_journal_commits_in_batches(tmp_path):
    journal = DistributorJournal(tmp_path / "d.sqlite", commit_every_s=0.05)
    journal.begin(1, {"S_A": "A"})
    journal.acked("S_A", 0)
    assert journal.next_commit_at() is not None
    journal.maybe_commit(journal.next_commit_at() - 0.01)  # type: ignore[operator]
    assert journal.next_commit_at() is not None  # not yet due
    journal.maybe_commit(journal.next_commit_at())  # type: ignore[arg-type]
    assert journal.next_commit_at() is None
    journal.close(complete=False)


def test_a_journal_of_the_other_role_is_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    CollectorJournal(path).close()
    with pytest.raises(ConfigurationError, match="collector journal"):
        DistributorJournal(path)


def test_a_finished_run_is_not_run_again_and_other_tasks_are_refused(tmp_path, endpoints):
    task = make_task(endpoints.worker, 3)
    path = tmp_path / "d.sqlite"
    journal = DistributorJournal(path)
    journal.begin(99, {"FIRST": task.__name__})
    journal.acked("FIRST", 0)
    journal.task_finished("FIRST")
    journal.close(complete=True)
    report = Distributor(endpoints.collector, endpoints.ack, tasks=[task], journal=path).run()
    assert report.already_complete and report.collected == {"FIRST": 1}

    other = make_task(endpoints.worker, 3, task_type="SECOND")
    journal = DistributorJournal(path)
    journal.begin(100, {"FIRST": task.__name__})
    journal.close(complete=False)
    dist = Distributor(endpoints.collector, endpoints.ack, tasks=[other], journal=path)
    with pytest.raises(ConfigurationError, match="holds run 100 of tasks"):
        dist.run()
