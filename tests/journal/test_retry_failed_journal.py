"""``zmqpipeline run --journal J --retry-failed`` re-drives just the failed items of a
finished journal (issue 28): it used to say "already complete" (exit 1), and only
``--fresh``, which redoes everything, tried them again. Real processes throughout."""

from __future__ import annotations

from support.cli import edit, write_pipeline, zmqpipeline


def test_retry_failed_hands_out_just_the_failures_of_a_finished_run(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=10, poison=4)
    journals = tmp_path / "journals"
    first = zmqpipeline("run", str(folder), "--journal", str(journals))
    assert first.returncode == 1, first.stdout + first.stderr
    assert "FAILED CLI_JOB/3" in first.stdout
    # still failing: it is tried again, fails again, and the run exits 1 as it did
    again = zmqpipeline("run", str(folder), "--journal", str(journals), "--retry-failed")
    assert again.returncode == 1, again.stdout + again.stderr
    assert "retry-failed: 1 failed item(s) go out again: CLI_JOB/3 as CLI_JOB/10" in again.stdout
    assert "COLLECTED []" in again.stdout  # nothing else handed to handle_collection
    edit(folder / "worker.py", "raise ValueError('poisoned item')", "pass")  # the bug fixed
    fixed = zmqpipeline("run", str(folder), "--journal", str(journals), "--retry-failed")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "CLI_JOB/10 as CLI_JOB/11" in fixed.stdout, fixed.stdout
    assert "COLLECTED [4]" in fixed.stdout  # just the failed item, once
    done = zmqpipeline("run", str(folder), "--journal", str(journals))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is already complete: nothing to do" in done.stdout
    nothing = zmqpipeline("run", str(folder), "--journal", str(journals), "--retry-failed")
    assert nothing.returncode == 0, nothing.stdout + nothing.stderr
    assert "retry-failed: 0 failed item(s) go out again" in nothing.stdout


def test_retry_failed_needs_a_journal(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=3)
    result = zmqpipeline("run", str(folder), "--retry-failed")
    assert result.returncode == 2
    assert "--retry-failed needs --journal" in result.stderr
