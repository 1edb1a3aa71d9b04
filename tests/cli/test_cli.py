"""The zmqpipeline command: run, list, the single-role commands and bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from support.cli import write_pipeline, zmqpipeline
from support.paths import ROOT

pytestmark = pytest.mark.timeout(60)


def test_run_reports_every_item_and_exits_zero(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=40)
    result = zmqpipeline("run", str(folder), "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"COLLECTED {list(range(1, 41))}" in result.stdout
    assert "CLI_JOB" in result.stdout and "OK: all 40 items collected" in result.stdout
    assert result.stdout.count("worker JobWorker") == 2  # one line per worker process
    assert not list(folder.glob("*.ipc"))


def test_run_with_a_failed_item_prints_it_and_exits_non_zero(tmp_path):
    folder = write_pipeline(tmp_path / "poison", n_items=10, poison=4)
    result = zmqpipeline("run", str(folder))
    assert result.returncode == 1
    assert "FAILED CLI_JOB/3 after 3 attempt(s): ValueError: poisoned item" in result.stdout
    assert "data {'i': 4}" in result.stdout  # the start of the failed item's data
    assert f"COLLECTED {[1, 2, 3, 5, 6, 7, 8, 9, 10]}" in result.stdout


def test_list_names_every_role(tmp_path):
    folder = write_pipeline(tmp_path / "job")
    result = zmqpipeline("list", str(folder))
    assert result.returncode == 0, result.stderr
    for expected in (
        "task       JobTask",
        "worker     JobWorker",
        "collector  JobCollector",
        "type CLI_JOB",
        "single-threaded",
    ):
        assert expected in result.stdout


def test_single_role_commands_run_a_pipeline(tmp_path, procs):
    folder = write_pipeline(tmp_path / "job", n_items=25)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = []
    try:
        for args in (
            ["collector", "collector.py:JobCollector"],
            ["worker", "worker.py:JobWorker"],
            ["worker", "worker"],
            ["distributor", "tasks.py", "collector"],
        ):
            started.append(
                subprocess.Popen(
                    [sys.executable, "-m", "zmqpipeline", *args],
                    cwd=folder,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        outputs = [p.communicate(timeout=40) for p in started]
    finally:
        for p in started:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
    assert [p.returncode for p in started] == [0, 0, 0, 0], outputs
    assert f"COLLECTED {list(range(1, 26))}" in outputs[0][0]
    assert "collected {'CLI_JOB': 25}, failed 0" in outputs[3][0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "/no/such/folder"], "no such folder: /no/such/folder"),
        (["run", "/no/such/tasks.py"], "no such file: /no/such/tasks.py (expected the folder"),
        (["collector", "{job}/collector.py:JobColector"], "did you mean"),
        (["run", "{job}", "--log-level", "LOUD"], "invalid choice: 'LOUD'"),
        (["run", "{empty}"], "holds no Python files"),
        (["run", "{job}", "--workers", "0"], "expected a positive integer, got 0"),
        (["run", "{job}", "--threads", "x"], "expected a positive integer, got 'x'"),
        (["worker", "{job}/tasks.py:JobTask"], "is not a Worker subclass"),
        (["collector", "{job}/worker.py:Nope"], "has no Nope"),
        (["worker", "{job}/missing.py:X"], "no such file"),
        (["worker", "no_such_module_xyz:X"], "cannot import no_such_module_xyz"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["run", "{broken}"], "cannot import"),
    ],
)
def test_bad_input_is_one_clear_line_and_status_2(tmp_path, args, message):
    job = write_pipeline(tmp_path / "job")
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tasks.py").write_text("this is not python\n")
    paths = {"job": str(job), "empty": str(tmp_path / "empty"), "broken": str(tmp_path / "broken")}
    result = zmqpipeline(*[a.format(**paths) for a in args])
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("zmqpipeline: error:")


def test_ctrl_c_drains_the_run_and_leaves_nothing(tmp_path):
    """The terminal's Ctrl-C reaches `run` alone (its children have groups of their own):
    the first drains the run through its control endpoint, whose report says so."""
    folder = write_pipeline(tmp_path / "slow", n_items=10_000)
    (folder / "worker.py").write_text(
        (folder / "worker.py")
        .read_text()
        .replace(
            "return {'i': data['i']}", "import time; time.sleep(0.01); return {'i': data['i']}"
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "zmqpipeline", "run", str(folder), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("control: ipc://"), line
        # progress lines appear every 2 s on a pipe: wait for the first
        line = process.stdout.readline()
        assert "collected" in line, line
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does to the foreground group
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, out + err
    assert "Ctrl-C: draining" in out and "interrupted: drained the run" in out, out
    assert "drained: nothing new was handed out" in out
    assert "NOT OK" in out and "abandoned" not in out
    leftovers = subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("zmqpipeline-")]
