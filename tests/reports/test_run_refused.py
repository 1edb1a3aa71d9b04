"""A ``zmqpipeline run`` whose role cannot start (its address is taken by another run) is
one line naming the user's address, exit 2: it was a raw traceback, exit 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.procs import free_port

import zmqpipeline
from zmqpipeline import Pusher, PushError

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(zmqpipeline.__file__).resolve().parents[1]


def test_a_second_run_on_a_taken_port_is_one_line_and_exit_2(tmp_path):
    push = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(SOURCE), "TMPDIR": str(tmp_path)}
    args = [sys.executable, "-m", "zmqpipeline", "run", str(ROOT / "examples" / "push")]
    first = subprocess.Popen(
        [*args, "--push", push, "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        pusher = Pusher(push, timeout=0.5)
        deadline = time.monotonic() + 20
        while True:  # until the first run's distributor takes pushes
            try:
                pusher.push("NUMBERS", {"n": 1})
                break
            except PushError:
                assert time.monotonic() < deadline and first.poll() is None
        second = subprocess.run(
            [*args, "--push", push, "--quiet"], env=env, capture_output=True, text=True, timeout=40
        )
        pusher.close("NUMBERS")
        first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert second.returncode == 2, second.stdout + second.stderr
    assert "Traceback" not in second.stdout + second.stderr, second.stdout + second.stderr
    errors = [line for line in second.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, second.stderr  # (the other roles say they were stopped)
    assert errors[0].startswith(
        f"zmqpipeline: error: distributor cannot bind {push}: Address already in use"
    ), second.stderr
    assert "error in" not in second.stdout, second.stdout
    assert first.returncode == 0
