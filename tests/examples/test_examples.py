"""The tutorial's examples, run both ways: each file in its own process (the tutorial's
way, with private ports) and through ``zmqpipeline run``. Exact counts are checked."""

from __future__ import annotations
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
import pytest
from support.procs import free_port
from support.paths import ROOT


pytestmark = pytest.mark.timeout(120)


EXAMPLES = ROOT / "examples"


ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


# files started in this order (collector first, as the tutorial suggests), and what each
# must print
TUTORIAL = {
    "singlethread": (
        ["collector.py", "worker.py", "run_distributor.py"],
        {
            "collector.py": ["collected 100 items"],
            "worker.py": ["finished - handled 100 executions"],
        },
    ),
    "multithread": (
        ["collector.py", "worker.py", "run_distributor.py"],
        {
            "collector.py": ["collected 100 items"],
            "worker.py": ["finished - handled 100 executions"],
        },
    ),
    "dependencies": (
        ["collector.py", "second_worker.py", "first_worker.py", "run_distributor.py"],
        {
            "collector.py": ["FIRST: collected 500 items", "SECOND: collected 500 items"],
            "first_worker.py": ["finished - handled 500 executions"],
            "second_worker.py": ["finished - handled 500 executions"],
        },
    ),
    "metadata": (
        ["collector.py", "worker.py", "run_distributor.py", "meta_worker.py"],
        {
            "collector.py": ["MyCollector: metadata is {'meta_variable': 'my value'}"],
            "worker.py": ["MyWorker: meta variable is my value"],
            "run_distributor.py": ["MyTask: meta_variable is:  my value"],
            "meta_worker.py": ["worker is finished"],
        },
    ),
    "logging": (
        ["collector.py", "worker.py", "run_distributor.py"],
        {"collector.py": ["collected 20 items"], "worker.py": ["finished - handled 20 executions"]},
    ),
}


def _private_copy(name: str, tmp_path: Path) -> Path:
    """Copy an example and give its tcp endpoints free ports (the same port stays the same)."""
    folder = tmp_path / name
    shutil.copytree(EXAMPLES / name, folder)
    settings = folder / "settings.py"
    ports: dict[str, int] = {}
    text = re.sub(
        r"tcp://localhost:(\d+)",
        lambda m: f"tcp://127.0.0.1:{ports.setdefault(m.group(1), free_port())}",
        settings.read_text(),
    )
    settings.write_text(text)
    return folder


@pytest.mark.parametrize("name", sorted(TUTORIAL))
def test_example_the_tutorial_way(name, tmp_path):
    folder = _private_copy(name, tmp_path)
    order, expected = TUTORIAL[name]
    started: dict[str, subprocess.Popen] = {}
    try:
        for filename in order:
            started[filename] = subprocess.Popen(
                [sys.executable, filename],
                cwd=folder,
                env=ENV,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        outputs = {f: p.communicate(timeout=90) for f, p in started.items()}
    finally:
        for process in started.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
    for filename, process in started.items():
        assert process.returncode == 0, (filename, outputs[filename])
        assert "Traceback" not in outputs[filename][1], outputs[filename][1]
    for filename, lines in expected.items():
        for line in lines:
            assert line in outputs[filename][0], (filename, outputs[filename][0][-2000:])
    assert not list(folder.glob("*.ipc"))
    if name == "logging":
        assert "run finished: 20 item(s) collected" in (folder / "output.log").read_text()


@pytest.mark.parametrize(
    "name, total",
    [
        ("singlethread", 100),
        ("multithread", 100),
        ("dependencies", 1000),
        ("metadata", 1),
        ("logging", 20),
    ],
)
def test_example_with_zmqpipeline_run(name, total, tmp_path):
    workers = "1" if name == "dependencies" else "2"
    result = subprocess.run(
        [sys.executable, "-m", "zmqpipeline", "run", str(EXAMPLES / name), "--workers", workers],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"OK: all {total} items collected" in result.stdout
    if name == "dependencies":
        assert "FIRST: collected 500 items" in result.stdout
        assert "SECOND: collected 500 items" in result.stdout


def test_sequential_benchmark_runs():
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "sequential" / "benchmark.py"), "50"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert "running - iterations: 50 - delay: 0.010" in result.stdout
    assert re.search(r"overhead: -?\d+\.\d%", result.stdout)


def test_readme_tutorial_saved_as_one_file_runs_with_zmqpipeline_run(tmp_path):
    readme = (ROOT / "README.md").read_text()
    code = readme.split("## The tutorial in brief", 1)[1].split("```python\n", 1)[1]
    code = code.split("```", 1)[0]
    folder = tmp_path / "calc"
    folder.mkdir()
    (folder / "pipeline.py").write_text(code)
    result = subprocess.run(
        [sys.executable, "-m", "zmqpipeline", "run", str(folder), "--quiet"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: all 100 items collected" in result.stdout
