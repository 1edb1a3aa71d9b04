"""The zmqpipeline command: what a new user trips over (issue 13) gets one clear message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from support.cli import edit, write_pipeline, zmqpipeline
from support.paths import ROOT

pytestmark = pytest.mark.timeout(60)


def test_exception_in_task_handle_is_reported_with_its_call_and_exit_1(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=10)
    edit(folder / "tasks.py", "self.n += 1\n", "self.n += 1\n        1 / (self.n - 5)\n")
    result = zmqpipeline("run", str(folder))
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "FAILED CLI_JOB: Task.handle() raised on call 5: ZeroDivisionError: division by zero"
        in result.stdout
    )
    assert "OK: all" not in result.stdout and "NOT OK" in result.stdout


def test_killed_worker_is_named_with_pid_and_signal_and_exit_1(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=40)
    marker = tmp_path / "killed-once"
    edit(
        folder / "worker.py",
        "if data['i'] ==",
        "import os, signal\n"
        f"        if data['i'] == 5 and not os.path.exists({str(marker)!r}):\n"
        f"            open({str(marker)!r}, 'w').close()\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        "        if data['i'] ==",
    )
    result = zmqpipeline("run", str(folder), "--workers", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"COLLECTED {list(range(1, 41))}" in result.stdout  # nothing lost
    killed = [line for line in result.stdout.splitlines() if "killed by SIGKILL" in line]
    assert any("worker JobWorker" in line and "pid" in line for line in killed), result.stdout
    assert "PROCESS FAILED: worker JobWorker (pid" in result.stdout
    assert "never handed out" in result.stdout


def test_module_running_its_distributor_at_import_is_refused(tmp_path):
    folder = write_pipeline(tmp_path / "job")
    (folder / "run_distributor.py").write_text(
        "import zmqpipeline, tasks, collector\n"
        "zmqpipeline.Distributor.register_task(tasks.JobTask)\n"
        "zmqpipeline.Distributor(collector.JobCollector.endpoint,\n"
        "                        collector.JobCollector.ack_endpoint).run()\n"
    )
    result = zmqpipeline("run", str(folder), timeout=20)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "run_distributor.py runs a Distributor when it is imported" in result.stderr
    assert 'if __name__ == "__main__":' in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_list_reports_a_worker_it_could_not_load(tmp_path):
    folder = write_pipeline(tmp_path / "job")
    edit(folder / "worker.py", "collector_endpoint =", "collector_endpiont =")
    result = zmqpipeline("list", str(folder))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT LOADED" in result.stdout and "did you mean 'collector_endpoint'" in result.stdout
    assert "task       JobTask" in result.stdout  # what did load is still listed


def test_curve_variables_naming_missing_files_fail_in_one_line(tmp_path):
    folder = write_pipeline(tmp_path / "job")
    keys = tmp_path / "keys"
    assert zmqpipeline("keys", str(keys), "--name", "w1").returncode == 0
    for secret, authorized in (
        (keys / "missing.key_secret", keys),
        (keys / "w1.key_secret", keys / "authorized"),  # the README's folder, never made
    ):
        env = {
            "ZMQPIPELINE_CURVE_SECRET_KEY": str(secret),
            "ZMQPIPELINE_CURVE_AUTHORIZED_KEYS": str(authorized),
        }
        result = run_with_env(env, "run", str(folder))
        assert result.returncode == 2, result.stdout + result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "ZMQPIPELINE_CURVE_" in result.stderr and "Traceback" not in result.stderr
        assert result.stdout == ""


def run_with_env(extra: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    return subprocess.run(
        [sys.executable, "-m", "zmqpipeline", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=45,
    )


def test_readme_security_block_works_pasted_as_is(tmp_path):
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Across machines, securely", 1)[1].split("```bash\n", 1)[1]
    block = block.split("```", 1)[0]
    shutil.copytree(ROOT / "examples" / "singlethread", tmp_path / "examples" / "singlethread")
    script = block.replace("zmqpipeline ", f"{sys.executable} -m zmqpipeline ")
    result = subprocess.run(
        [
            "bash",
            "-e",
            "-c",
            script + f"\n{sys.executable} -m zmqpipeline run examples/singlethread --quiet\n",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("OK: all 100 items collected") == 2, result.stdout
    assert "Traceback" not in result.stderr


def test_log_level_after_the_command_and_a_file_for_its_folder(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=5)
    result = zmqpipeline("run", str(folder / "tasks.py"), "--log-level", "INFO")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: all 5 items collected" in result.stdout
    assert " INFO " in result.stderr  # the level took effect


def test_help_explains_module_class_without_markup():
    top = zmqpipeline("--help")
    assert top.returncode == 0 and "``" not in top.stdout
    for role in ("worker", "collector", "metadata"):
        text = zmqpipeline(role, "--help").stdout
        assert "MODULE:CLASS names one class" in text and "example:" in text
        assert f"zmqpipeline {role} " in text
    assert "PATH" in zmqpipeline("list", "--help").stdout
