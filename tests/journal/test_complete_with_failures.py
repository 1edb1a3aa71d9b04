"""A journaled run that ended with failures, run again (issue 28): it used to exit 0
("already complete"); now it exits 1 as the run did, and says how many failed."""

from __future__ import annotations

from support.cli import zmqpipeline as cli
from support.paths import ROOT

from zmqpipeline.journal import DistributorJournal


def test_a_complete_run_with_failures_run_again_exits_non_zero(tmp_path):
    journals = tmp_path / "journals"
    journal = DistributorJournal(journals / "distributor.sqlite")  # as such a run leaves it
    journal.begin(9, {"T": "Some"})
    journal.failed(
        {
            "task_type": "T",
            "seq": None,
            "item_id": "T/handle#1",
            "attempts": 1,
            "deaths": 0,
            "error": "ValueError: no",
            "data": None,
        }
    )
    journal.close(complete=True)
    again = cli("run", str(ROOT / "examples" / "singlethread"), "--journal", str(journals))
    assert again.returncode == 1, again.stdout + again.stderr
    [line] = again.stdout.splitlines()
    assert "run 9 in journal" in line and "is already complete: it ended with 1 failed" in line
