"""The zmqpipeline command's children and progress: process titles, the progress bar,
output above it, and children that end with a killed run."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.cli import edit, write_pipeline, zmqpipeline
from support.paths import ROOT

pytestmark = pytest.mark.timeout(60)


def test_children_have_distinct_process_titles_shown_with_their_pid(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=4)
    edit(
        folder / "worker.py",
        "return {'i': data['i']}",
        "return {'i': data['i'], 'comm': open('/proc/self/comm').read().strip()}",
    )
    edit(
        folder / "collector.py",
        "self.seen.append(data['i'])",
        "self.seen.append(data['i'])\n"
        "        print('COMM', data['comm'], open('/proc/self/comm').read().strip())",
    )
    result = zmqpipeline("run", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "COMM zmqp-worker zmqp-collector" in result.stdout
    probe = "from zmqpipeline.cli.local import set_process_title as t; t('distributor'); "
    probe += "print(open('/proc/self/comm').read().strip())"
    named = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert named.stdout.strip() == "zmqp-distrib", named.stderr
    assert re.search(r"distributor +pid \d+", result.stdout)
    assert re.search(r"collector +pid \d+", result.stdout)


def _tasks(collected: int, size: int | None) -> dict[str, dict[str, int | None]]:
    return {
        "CLI_JOB": {
            "handed_out": collected + 2,
            "in_flight": 2,
            "collected": collected,
            "failed": 0,
            "size": size,
        }
    }


def test_progress_is_a_bar_with_eta_given_a_size_else_a_spinner():
    from zmqpipeline.cli.progress import progress_line

    sized = progress_line(_tasks(50, 200), elapsed=2.0)
    assert "25%" in sized and "50/200" in sized and "25 items/s" in sized
    assert "ETA 6.0 s" in sized  # 150 left at 25 items/s
    unsized = progress_line(_tasks(50, None), elapsed=2.0, tick=1)
    assert unsized.startswith("/ 50 collected") and "25 items/s" in unsized
    assert "ETA" not in unsized and "%" not in unsized


def test_output_of_the_processes_is_printed_above_the_bar():
    import io

    from zmqpipeline.cli.progress import Progress

    screen = io.StringIO()
    progress = Progress(screen, quiet=False, tty=True)
    progress._tqdm_class = None  # the plain bar, tqdm or not
    progress.show(_tasks(10, 100))
    progress.echo("hello from a worker", screen)
    progress.clear()
    # the bar is erased (\r + blanks + \r) before the line and drawn again after it
    before, after = screen.getvalue().split("hello from a worker\n")
    assert before.endswith("\r") and before.rstrip("\r ").startswith("\r[")
    assert after.startswith("\r[")
    visible = screen.getvalue().split("\r")
    assert "hello from a worker\n" in visible  # the line stands whole on its own


def test_progress_shows_no_rate_before_a_second_of_work():
    from zmqpipeline.cli.progress import progress_line

    assert "- items/s" in progress_line(_tasks(45, None), elapsed=0.01)
    assert "ETA -" in progress_line(_tasks(45, 100), elapsed=0.01)


def test_children_of_a_killed_run_end_with_it(tmp_path):
    """`zmqpipeline run` SIGKILLed (a CI timeout, an OOM kill): its children do not run on
    as orphans; the kernel sends them SIGTERM and they stop."""
    folder = write_pipeline(tmp_path / "job", n_items=1_000_000)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(
        [sys.executable, "-m", "zmqpipeline", "run", str(folder), "--workers", "2", "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children_file = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
    deadline = time.monotonic() + 30
    children: list[int] = []
    while len(children) < 4 and time.monotonic() < deadline:  # collector, distributor, 2 workers
        children = [int(pid) for pid in children_file.read_text().split()]
        time.sleep(0.05)  # waiting for processes to be created: there is no event to await
    assert len(children) == 4, children
    handles = [os.pidfd_open(pid) for pid in children]
    try:
        parent.kill()
        parent.wait(10)
        for handle in handles:  # a pidfd turns readable when its process ends
            readable, _, _ = select.select([handle], [], [], 15)
            assert readable, "a child outlived its killed parent"
    finally:
        for handle in handles:
            os.close(handle)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
