"""The zmqpipeline command: run, list, the single-role commands and bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import free_port

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


def zmqpipeline(
    *args: str, cwd: Path | None = None, timeout: float = 45
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "zmqpipeline", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_pipeline(
    folder: Path, n_items: int = 30, poison: int | None = None, collector_port: int | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    port = collector_port or free_port()
    (folder / "settings.py").write_text(
        textwrap.dedent(f"""
        import zmqpipeline
        TASK_TYPE = 'CLI_JOB'
        zmqpipeline.TaskType.register_type(TASK_TYPE)
        WORKER_ENDPOINT = 'ipc://{folder}/w.ipc'
        COLLECTOR_ENDPOINT = 'tcp://127.0.0.1:{port}'
        ACK_ENDPOINT = 'tcp://127.0.0.1:{free_port()}'
    """)
    )
    (folder / "tasks.py").write_text(
        textwrap.dedent(f"""
        import settings, zmqpipeline
        class JobTask(zmqpipeline.Task):
            task_type = zmqpipeline.TaskType(settings.TASK_TYPE)
            endpoint = zmqpipeline.EndpointAddress(settings.WORKER_ENDPOINT)
            n = 0
            def handle(self, data, address, msgtype):
                self.n += 1
                if self.n >= {n_items}:
                    self.is_complete = True
                return {{'i': self.n}}
    """)
    )
    (folder / "worker.py").write_text(
        textwrap.dedent(f"""
        import settings, zmqpipeline
        class JobWorker(zmqpipeline.SingleThreadedWorker):
            task_type = zmqpipeline.TaskType(settings.TASK_TYPE)
            endpoint = zmqpipeline.EndpointAddress(settings.WORKER_ENDPOINT)
            collector_endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ENDPOINT)
            def handle_execution(self, data, *args, **kwargs):
                if data['i'] == {poison!r}:
                    raise ValueError('poisoned item')
                return {{'i': data['i']}}
    """)
    )
    (folder / "collector.py").write_text(
        textwrap.dedent("""
        import settings, zmqpipeline
        class JobCollector(zmqpipeline.Collector):
            endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ENDPOINT)
            ack_endpoint = zmqpipeline.EndpointAddress(settings.ACK_ENDPOINT)
            seen = []
            def handle_collection(self, data, task_type, msgtype):
                self.seen.append(data['i'])
            def handle_finished(self, data, task_type):
                print('COLLECTED', sorted(self.seen))
    """)
    )
    return folder


def test_run_reports_every_item_and_exits_zero(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=40)
    result = zmqpipeline("run", str(folder), "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"COLLECTED {list(range(1, 41))}" in result.stdout
    assert "CLI_JOB" in result.stdout and "OK: all 40 items collected" in result.stdout
    assert result.stdout.count("JobWorker[") == 2  # per-worker share
    assert not list(folder.glob("*.ipc"))


def test_run_with_a_failed_item_prints_it_and_exits_non_zero(tmp_path):
    folder = write_pipeline(tmp_path / "poison", n_items=10, poison=4)
    result = zmqpipeline("run", str(folder))
    assert result.returncode == 1
    assert "FAILED CLI_JOB/3 after 3 attempt(s): ValueError: poisoned item" in result.stdout
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


def test_ctrl_c_stops_everything_and_leaves_nothing(tmp_path):
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
        # progress lines appear every 2 s on a pipe: wait for the first
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "collected" in line, line
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does to the foreground group
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, out + err
    assert "interrupted" in out
    leftovers = subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("zmqpipeline-")]
