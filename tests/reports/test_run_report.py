"""What ``zmqpipeline run`` prints at the end adds up and says what happened: real runs
of the examples (copied to a temporary folder when changed), and the report's and the
progress bar's lines from the counts the distributor sends."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import zmqpipeline
from zmqpipeline.cli.progress import Progress, progress_line
from zmqpipeline.cli.report import Child, print_report

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
#: The package under test (its parent goes on the children's path).
SOURCE = Path(zmqpipeline.__file__).resolve().parents[1]


def zmqpipeline_cli(*args: str, timeout: float = 45) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    return subprocess.run(
        [sys.executable, "-m", "zmqpipeline", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_each_worker_line_adds_up_to_the_items_it_ran():
    """``make demo``: 100 items, two workers; a fair tail hands some back (RECALL). The
    report used to say "collected 50 (50%) of 55 handed out" and "50 of 59"."""
    result = zmqpipeline_cli("run", str(ROOT / "examples" / "singlethread"), "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "worker MyWorker" in line]
    assert len(lines) == 2, result.stdout
    took = 0
    for line in lines:
        found = re.search(r"collected (\d+) \(\d+%\) of (\d+) handed out", line)
        assert found, line
        collected, handed = int(found[1]), int(found[2])
        back = re.search(r", (\d+) handed back for another worker", line)
        given_back = int(back[1]) if back else 0
        assert collected == handed - given_back, line  # every item it kept, it ran
        took += handed - given_back
    assert took == 100, result.stdout


def _stages_copy(tmp_path: Path, fail_on: str | None = None) -> Path:
    folder = tmp_path / "stages"
    shutil.copytree(ROOT / "examples" / "stages", folder)
    if fail_on is not None:
        tasks = folder / "tasks.py"
        text = tasks.read_text()
        hook = "        # skip every tenth page"
        assert hook in text
        tasks.write_text(
            text.replace(
                hook,
                f"        if result['url'].endswith('/{fail_on}'):\n"
                "            raise ValueError('no such page')\n" + hook,
            )
        )
    return folder


def test_a_failed_derive_names_the_result_it_failed_on(tmp_path):
    """It was printed ``FAILED FETCH: Task.7)() raised on call ?``."""
    folder = _stages_copy(tmp_path, fail_on="7")
    result = zmqpipeline_cli("run", str(folder))
    assert result.returncode == 1, result.stdout + result.stderr
    failed = [line.strip() for line in result.stdout.splitlines() if "FAILED" in line]
    assert failed == [
        "FAILED FETCH: Task.derive() raised on the result of URLS/6: ValueError: no such page"
    ], result.stdout
    fetch = next(line for line in result.stdout.splitlines() if line.startswith("  FETCH "))
    assert "(+1 error(s) of the task's own code)" in fetch, fetch


def test_a_healthy_staged_run_warns_of_nothing(tmp_path):
    """A healthy run logged ``WARNING worker went away ... re-issuing its 0 item(s)``."""
    result = zmqpipeline_cli("run", str(_stages_copy(tmp_path)), "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr + result.stdout, result.stderr


def _report(**tasks: dict) -> dict:
    workers = [
        {"pid": 11, "host": "h", "collected": 30, "handed_out": 30, "handed_back": 0},
        {"pid": 12, "host": "h", "collected": 20, "handed_out": 24, "handed_back": 4},
    ]
    return {
        "collected": {tt: t["collected"] for tt, t in tasks.items()},
        "tasks": tasks,
        "failed": [],
        "retries": 0,
        "wall_time_s": 5.0,
        "aborted": False,
        "workers": workers,
        "ended_by": "completed",
    }


def _task(collected: int, size: int, before: int = 0) -> dict:
    return {
        "collected": collected,
        "failed": 0,
        "in_flight": 0,
        "handed_out": size,
        "not_handed_out": 0,
        "size": size,
        "collected_before": before,
    }


def test_a_resumed_run_counts_only_its_own_items_in_rate_and_shares():
    """Resumed with 950 of 1 000 collected before: 50 now in 5 s is 10 items/s (it said
    200), and the two workers' shares are 60 % and 40 % of this run (they summed to 5 %)."""
    out = io.StringIO()
    children = [Child("worker W", 11, 0), Child("worker W", 12, 0)]
    print_report(out, "p", _report(T=_task(1000, 1000, before=950)), True, children)
    text = out.getvalue()
    assert "10.0 items/s" in text, text
    assert "collected 30 (60%) of 30 handed out" in text, text
    assert "collected 20 (40%) of 24 handed out, 4 handed back for another worker" in text
    assert "950 item(s) collected before" in text
    line = progress_line({"T": _task(1000, 1000, before=950)}, elapsed=5.0)
    assert "10 items/s" in line, line


def test_the_bar_stops_at_the_reports_wall_time():
    """The bar's clock (7.9 s) and the report's wall time (6.7 s) differed: the bar ran
    on through the end of the run; its last line now shows the report's time."""
    out = io.StringIO()
    progress = Progress(out, quiet=False, tty=True)
    progress.show({"T": _task(10, 100)})
    progress.show({"T": _task(100, 100)}, elapsed=6.7)
    assert out.getvalue().rstrip().endswith("ETA -"), out.getvalue()
    assert "| 6.7 s |" in out.getvalue().rsplit("\r", 1)[-1]


def _slow_pipeline(folder: Path) -> Path:
    """Items of 0.3 s; the collector's handle_finished says END came, then takes 2 s."""
    folder.mkdir()
    (folder / "tasks.py").write_text(
        textwrap.dedent(f"""
        import zmqpipeline
        zmqpipeline.TaskType.register_type('SLOW')
        class SlowTask(zmqpipeline.Task):
            task_type = zmqpipeline.TaskType('SLOW')
            endpoint = zmqpipeline.EndpointAddress('ipc://{folder}/w.ipc')
            n_items = 1000
            n = 0
            def handle(self, data, address, msgtype):
                self.n += 1
                self.is_complete = self.n >= 1000
                return {{'i': self.n}}
        class SlowWorker(zmqpipeline.SingleThreadedWorker):
            task_type = zmqpipeline.TaskType('SLOW')
            endpoint = zmqpipeline.EndpointAddress('ipc://{folder}/w.ipc')
            collector_endpoint = zmqpipeline.EndpointAddress('ipc://{folder}/c.ipc')
            def handle_execution(self, data, *args, **kwargs):
                import time; time.sleep(0.3)
                return data
        class SlowCollector(zmqpipeline.Collector):
            endpoint = zmqpipeline.EndpointAddress('ipc://{folder}/c.ipc')
            ack_endpoint = zmqpipeline.EndpointAddress('ipc://{folder}/a.ipc')
            def handle_collection(self, data, task_type, msgtype):
                pass
            def handle_finished(self, data, task_type):
                import sys, time
                print('END CAME', flush=True)
                time.sleep(2)
    """)
    )
    return folder


def test_a_second_ctrl_c_after_the_drain_ended_the_run_says_drained(tmp_path):
    """First Ctrl-C drains, the run ends drained; a second Ctrl-C comes too late to stop
    it. The CLI said "stopped the run" while the report said "drained"."""
    folder = _slow_pipeline(tmp_path / "slow")
    env = {**os.environ, "PYTHONPATH": str(SOURCE), "TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "zmqpipeline", "run", str(folder)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("control: ipc://")
        assert "collected" in process.stdout.readline()  # the first progress line
        os.killpg(process.pid, signal.SIGINT)
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "END CAME" in line:  # the drain ended the run: too late to stop it
                os.killpg(process.pid, signal.SIGINT)
                break
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    out = "".join(lines) + out
    assert process.returncode == 130, out + err
    assert "Ctrl-C: the run is ending already" in out, out
    assert "drained: nothing new was handed out" in out, out
    assert "interrupted: drained the run (Ctrl-C)" in out, out
