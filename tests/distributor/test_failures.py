"""Failures for good are recorded in one place and journaled on every path: a stage's
``derive`` that raised is still reported after a crash and a resume."""

from __future__ import annotations

from support.scheduling import EP, SETTINGS, ack, make, sent, task_class
from support.stages import join, stage_class

from zmqpipeline.distributor.scheduler import Scheduler
from zmqpipeline.journal import DistributorJournal


def test_a_derive_failure_is_journaled_and_still_reported_after_a_crash(tmp_path):
    """A stage's ``derive`` raises on one result: the failure is written to the journal
    like every other, so a scheduler resumed from it after a crash still reports it."""

    def picky(result, item_id):
        if item_id == "ST_A/0":
            raise ValueError("cannot derive this one")
        return {"from": item_id}

    classes = (task_class("ST_A", 3), stage_class("ST_B", ["ST_A"], derive=picky))
    journal = DistributorJournal(tmp_path / "d.sqlite")
    journal.begin(42, {cls.task_type: cls.__name__ for cls in classes})
    s = make(*classes)
    s.journal = journal
    s.start({}, 0.0)
    join(s, EP, b"w1", "ST_A")
    sent(s)
    ack(s, "ST_A", [0, 1], 0.1, results={0: {"x": 0}, 1: {"x": 1}})
    assert [f["item_id"] for f in s.tasks["ST_B"].failed] == ["ST_B/derive(ST_A/0)"]
    journal.commit()
    journal.close(complete=False)  # as a crash leaves it: the run is not complete

    journal = DistributorJournal(tmp_path / "d.sqlite")
    loaded = journal.load()
    assert loaded is not None
    resumed = Scheduler([cls() for cls in classes], SETTINGS, run=loaded.run)
    resumed.resume_from(loaded)
    assert [f["item_id"] for f in resumed.tasks["ST_B"].failed] == ["ST_B/derive(ST_A/0)"]
    assert [f["item_id"] for f in resumed.summary(aborted=False)["failed"]] == [
        "ST_B/derive(ST_A/0)"
    ]
    journal.close(complete=False)
