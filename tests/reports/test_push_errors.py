"""Bad pushes are one clear error: ``zmqpipeline push`` with JSON nested too deeply exits 2
with one line, and ``Pusher`` raises a ``PushError`` for an item over the size limit (it
raised ``MessageTooLarge``, which is not one), against a real ``zmqpipeline run`` of
examples/push."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import zmqpipeline
from zmqpipeline import Pusher, PushError, Settings

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(zmqpipeline.__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(SOURCE)}


@pytest.fixture
def push_endpoint(tmp_path):
    """A running ``zmqpipeline run examples/push``: its push endpoint (the stream is
    closed, and the run ends, after the test)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "zmqpipeline", "run", str(ROOT / "examples" / "push"), "--quiet"],
        env={**ENV, "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        endpoint = ""
        for line in process.stdout:
            if line.startswith("push: "):
                endpoint = line.split()[1]
                break
        assert endpoint, "no push endpoint printed"
        path = Path(endpoint.removeprefix("ipc://"))
        deadline = time.monotonic() + 20
        while not path.exists():  # printed before the distributor binds it
            assert time.monotonic() < deadline and process.poll() is None, "no push endpoint"
            time.sleep(0.05)
        yield endpoint
        cli("close", endpoint, "NUMBERS")
        process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zmqpipeline", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("depth", [2_000, 10_000])
def test_json_nested_too_deeply_is_one_line_and_exit_2(push_endpoint, depth):
    """10 000 deep died with a RecursionError traceback, rc 1."""
    item = '{"a":' * depth + "1" + "}" * depth
    result = cli("push", push_endpoint, "NUMBERS", item)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "nested too deeply" in lines[0], lines
    assert cli("push", push_endpoint, "NUMBERS", '{"n": 1}').returncode == 0  # still taking


def test_an_item_over_the_size_limit_is_a_push_error(push_endpoint):
    small = Settings.from_env(max_message_bytes=10_000)
    pusher = Pusher(push_endpoint, settings=small)
    with pytest.raises(PushError, match=r"item 2 of the batch is too large to push"):
        pusher.push_many("NUMBERS", [{"n": 1}, {"blob": "x" * 20_000}])
    # A batch too large as a whole, each item small: sent in parts, all accepted.
    assert pusher.push_many("NUMBERS", [{"n": i, "pad": "y" * 900} for i in range(40)]) == 40
