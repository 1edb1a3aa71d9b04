"""A collector started against a journal whose run is complete ends at once, saying why
(issue 28): its distributor ends at once ("already complete"), and the collector used to
wait for ever. Real processes: ``zmqpipeline run`` then ``zmqpipeline collector``."""

from __future__ import annotations

import time

from support.cli import write_pipeline, zmqpipeline


def test_a_collector_over_a_complete_run_ends_saying_why(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=12)
    journals = tmp_path / "journals"
    first = zmqpipeline("run", str(folder), "--journal", str(journals))
    assert first.returncode == 0, first.stdout + first.stderr
    started = time.monotonic()
    collector = zmqpipeline(
        "collector",
        f"{folder}/collector.py:JobCollector",
        "--journal",
        str(journals / "collector.sqlite"),
        cwd=folder,
        timeout=20,
    )
    assert collector.returncode == 0, collector.stdout + collector.stderr
    assert "is already complete: nothing to collect" in collector.stderr, collector.stderr
    assert time.monotonic() - started < 10
    again = zmqpipeline("run", str(folder), "--journal", str(journals), timeout=20)
    assert again.returncode == 0, again.stdout + again.stderr
    [line] = again.stdout.splitlines()  # nothing started: no collector to wait
    assert "is already complete: nothing to do" in line
    assert "COLLECTED" not in again.stdout


def test_a_fresh_collector_over_a_complete_run_follows_a_new_one(tmp_path):
    """``--fresh`` on both roles still runs again over the same journals."""
    folder = write_pipeline(tmp_path / "job", n_items=8)
    journals = tmp_path / "journals"
    assert zmqpipeline("run", str(folder), "--journal", str(journals)).returncode == 0
    again = zmqpipeline("run", str(folder), "--journal", str(journals), "--fresh")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "COLLECTED [1, 2, 3, 4, 5, 6, 7, 8]" in again.stdout
