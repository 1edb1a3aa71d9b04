"""What the help and the docs show works as shown: every command describes itself, the
help's and the README's examples name classes that exist, docs/cli.md covers every
command, the getting-started sample is what a real run prints, the tutorial's collector
keeps its output when a run ends early, and the examples say when their numbers are
partial."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import zmqpipeline
from zmqpipeline import Control, ControlError

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(zmqpipeline.__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(SOURCE)}


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zmqpipeline", *args],
        env=ENV,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=45,
    )


def commands() -> list[str]:
    listing = cli("--help").stdout
    block = listing.split("\n  COMMAND\n", 1)[1].split("\noptions:")[0]
    return re.findall(r"^    (\w+)\s", block, re.MULTILINE)


def test_every_command_describes_itself_in_its_help():
    names = commands()
    assert {"run", "status", "pause", "resume", "drain", "stop", "retry", "push"} <= set(names)
    for name in names:
        text = cli(name, "--help").stdout
        paragraphs = text.split("\n\n")
        assert len(paragraphs) >= 2 and paragraphs[1].strip(), f"{name}: {text}"
        assert not paragraphs[1].startswith(("positional", "options")), f"{name}: {text}"


def _resolves(target: str, role: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    probe = (
        "import sys; from zmqpipeline.cli.discovery import load_class; "
        "print(load_class(sys.argv[1], sys.argv[2]).__name__)"
    )
    return subprocess.run(
        [sys.executable, "-c", probe, target, role],
        env=ENV,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("role", ["collector", "worker", "metadata"])
def test_the_help_example_of_each_role_names_a_class_that_exists(role):
    """``zmqpipeline collector examples/singlethread/collector.py:MyCollector`` and
    ``zmqpipeline metadata meta_worker:MyMetaData`` exited 2."""
    text = cli(role, "--help").stdout
    example = re.search(rf"example:\n  zmqpipeline {role} (\S+)", text)
    assert example, text
    found = _resolves(example[1], role, ROOT)
    assert found.returncode == 0, f"{example[1]}: {found.stderr}"


def test_the_readmes_role_commands_name_classes_that_exist():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\ncd (examples/\w+)\n(.*?)```", readme, re.DOTALL)
    assert block, "README: no role commands block"
    cwd = ROOT / block[1]
    roles = re.findall(r"^zmqpipeline (collector|worker|metadata) (\S+)", block[2], re.M)
    assert {role for role, _ in roles} == {"collector", "worker", "metadata"}, block[2]
    for role, target in roles:
        found = _resolves(target, role, cwd)
        assert found.returncode == 0, f"{role} {target}: {found.stderr}"


def test_the_cli_page_covers_every_command_and_option():
    page = (ROOT / "docs" / "cli.md").read_text()
    for name in commands():
        assert f"zmqpipeline {name}" in page or f"{name}|" in page or f"|{name}" in page, name
    for command in ("status", "pause", "resume", "drain", "stop", "retry"):
        assert re.search(rf"^## .*\b{command}\b", page, re.M), command
    distributor = page.split("### zmqpipeline distributor", 1)[1].split("\n## ", 1)[0]
    assert "`--control ENDPOINT`" in distributor and "`--push ENDPOINT`" in distributor
    keys = page.split("## zmqpipeline keys", 1)[1].split("\n## ", 1)[0]
    assert "`--role ROLE`" in keys
    for kept in ("## zmqpipeline check", "## zmqpipeline slurm env", "--lifetime"):
        assert kept in page, kept  # another change's sections stay


def test_the_stages_and_push_examples_are_on_a_docs_page():
    pages = " ".join(" ".join(p.read_text().split()) for p in (ROOT / "docs").rglob("*.md"))
    for example in ("examples/stages", "examples/push"):
        assert f"zmqpipeline run {example}" in pages, example


def _pattern(line: str) -> str:
    """A sample line as a regex: numbers, pids, paths and hand-backs may differ."""
    line = re.sub(r", \d+ handed back for another worker", "HANDBACK", line)
    out = re.escape(line)
    out = re.sub(r"(?:\\ )+", r"\\s+", out)  # column widths follow the numbers
    out = re.sub(r"zmqpipeline\\-\w+", r"zmqpipeline-\\w+", out)
    out = re.sub(r"\d[\d,]*(?:\\\.\d+)?", r"[\\d,]+(?:\\.\\d+)?", out)
    out = out.replace(r"\-\s+items/s", r"(?:-|[\d,]+)\s+items/s")  # a rate after 1 s
    if out.startswith(r"\|"):  # the spinner turns
        out = r"[|/\\-]" + out[2:]
    return out.replace("HANDBACK", r"(?:, \d+ handed back for another worker)?")


@pytest.mark.parametrize("page", ["getting-started.md", "cli.md"])
def test_the_sample_of_make_demo_is_what_a_real_run_prints(page):
    text = (ROOT / "docs" / page).read_text()
    sample = re.search(r"zmqpipeline run examples/singlethread --workers 2\n(.*?)```", text, re.S)
    assert sample, page
    result = cli("run", "examples/singlethread", "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    printed = [line.rstrip() for line in result.stdout.splitlines()]
    spinner = [i for i, line in enumerate(printed) if re.match(r"[|/\\-] \d", line)]
    printed = [line for i, line in enumerate(printed) if i not in spinner[:-1]]  # the last
    expected = sample[1].rstrip().splitlines()
    assert len(printed) == len(expected), (expected, printed)
    for want, got in zip(expected, printed, strict=True):
        assert re.fullmatch(_pattern(want.rstrip()), got), f"{page}: {want!r} != {got!r}"


def _tutorial_collector() -> type:
    page = (ROOT / "docs" / "tutorial" / "single-threaded.md").read_text()
    code = page.split("<!-- safe-handle-finished -->\n```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "single-threaded.md", "exec"), namespace)
    return namespace["TopCollector"]


@pytest.mark.parametrize(
    "summary,kept",
    [
        ({"aborted": True}, True),
        ({"aborted": False, "ended_by": "drained"}, True),
        ({"aborted": False, "ended_by": "completed"}, False),
    ],
)
def test_the_tutorials_collector_keeps_its_output_when_the_run_ends_early(tmp_path, summary, kept):
    """A collector stopped early overwrote a good top-20 file with an empty one."""
    cls = _tutorial_collector()
    good = tmp_path / "top20.json"
    good.write_text(json.dumps([9, 8, 7]))
    collector = SimpleNamespace(scores=[1], output=str(good))
    cls.handle_finished(collector, {"collected": {}, "failed": [], **summary}, "T")
    assert json.loads(good.read_text()) == ([9, 8, 7] if kept else [1])


def test_a_stopped_example_says_its_numbers_are_partial(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "zmqpipeline", "run", str(ROOT / "examples" / "singlethread")],
        env={**ENV, "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        control = Control(process.stdout.readline().split()[1], timeout=0.5)
        deadline = time.monotonic() + 20
        while True:
            try:
                if control.status()["tasks"]["CALC"]["collected"]:
                    break
            except ControlError:
                pass
            assert time.monotonic() < deadline and process.poll() is None
        control.stop()
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert "the run ended early (stopped): these numbers are partial" in out, out + err


def test_a_file_of_workers_run_as_a_script_says_how_to_run_it():
    """``python workers.py`` (no ``__main__`` block) exited 0 at once, silently."""
    result = subprocess.run(
        [sys.executable, "workers.py"],
        cwd=ROOT / "examples" / "stages",
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "usage: python workers.py UrlWorker|FetchWorker|ParseWorker" in result.stderr
