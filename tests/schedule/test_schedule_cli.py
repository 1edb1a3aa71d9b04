"""``zmqpipeline run examples/recurring`` (6 s instead of its minute, through its
RECURRING_RUN_SECONDS) with ``zmqpipeline schedule ...`` and ``status`` against it while it
runs: real processes, the CLI as a user types it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("dateutil", reason="RRULEs need python-dateutil (pip install '.[schedule]')")
pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "RECURRING_RUN_SECONDS": "6"}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zmqpipeline", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_example_polls_on_its_rules_and_the_schedule_cli_sees_and_changes_it(tmp_path):
    run = subprocess.Popen(
        [sys.executable, "-m", "zmqpipeline", "run", str(ROOT / "examples/recurring"), "--quiet"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert run.stdout is not None
        first = run.stdout.readline()  # "control: ipc://...  (...)"
        endpoint = first.split()[1]
        statuses = cli("schedule", "statuses", endpoint)
        assert statuses.returncode == 0, statuses.stderr
        lines = statuses.stdout.splitlines()
        assert lines[0] == "job_id,status,at,next_run,last_error"
        assert {line.split(",")[0] for line in lines[1:]} >= {"settings", "tasks", "hostname"}
        tell = json.loads(cli("schedule", "tell", endpoint, "settings").stdout)
        assert tell["rule"] == "FREQ=SECONDLY;INTERVAL=2;COUNT=3"
        added = cli("schedule", "set", endpoint, "extra", "NOW", "--data", '{"path": "worker.py"}')
        assert added.returncode == 0 and added.stdout.startswith("extra: scheduled"), added
        bad = cli("schedule", "set", endpoint, "broken", "SOMETIMES")
        assert bad.returncode == 1 and "bad rule (unknown rule" in bad.stdout
        assert ["extra", "NOW"] in [
            line.split(",", 1) for line in cli("schedule", "list", endpoint).stdout.splitlines()
        ]
        later = ["later", "NOW", "--after", str(time.time() + 3), "--data", '{"path": "tasks.py"}']
        assert cli("schedule", "set", endpoint, *later).returncode == 0
        shown = cli("status", endpoint).stdout  # the next due jobs, each with its time
        assert "schedule POLL:" in shown and "; next: " in shown and "later in " in shown, shown
        missing = cli("schedule", "tell", endpoint, "nope")
        assert missing.returncode == 1 and "no job 'nope'" in missing.stderr
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, out[-2000:] + err[-2000:]
    assert "settings: polled 3 times" in out and "extra: polled 1 times" in out
    assert "later: polled 1 times" in out
    assert "missing:" not in out  # StopJob at its first run: no result collected
    assert "OK:" in out
