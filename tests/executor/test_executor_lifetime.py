"""``zmqpipeline executor-worker --lifetime/--idle-timeout``: a remote worker leaves a
running executor on time, handing back what it had not started (no call lost, each
resolved once), and a worker no executor speaks to exits on its own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import executor_funcs as f
from support.procs import free_port

from zmqpipeline import Executor

HERE = Path(__file__).parent


def two_free_ports() -> int:
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def executor_worker(endpoint: str, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    command = [sys.executable, "-m", "zmqpipeline", "executor-worker", endpoint, *extra]
    return subprocess.Popen(command, env=env)


def test_a_worker_with_a_lifetime_leaves_a_running_executor_and_loses_no_call() -> None:
    port = two_free_ports()
    with Executor(workers=1, endpoint=f"tcp://127.0.0.1:{port}") as ex:
        futures = [ex.submit(f.pid_after, 0.01) for _ in range(600)]  # 6 s on one worker
        resolved: Counter[int] = Counter()
        for i, future in enumerate(futures):
            future.add_done_callback(lambda _, i=i: resolved.update([i]))
        remote = executor_worker(f"tcp://127.0.0.1:{port}", "--lifetime", "1.5s")
        try:
            code = remote.wait(30)
        finally:
            if remote.poll() is None:
                remote.kill()
                remote.wait()
        left_at = sum(fu.done() for fu in futures)
        pids = Counter(fu.result(timeout=30) for fu in futures)
    assert code == 0
    assert left_at < len(futures), "the executor finished before the worker left"
    assert pids[remote.pid] > 0 and sum(pids.values()) == 600
    assert set(pids) <= {remote.pid, *ex.worker_pids}
    assert resolved == Counter(range(600))


def test_a_worker_with_an_idle_timeout_exits_when_no_executor_speaks(tmp_path: Path) -> None:
    started = time.monotonic()
    worker = executor_worker(f"ipc://{tmp_path}/nobody", "--idle-timeout", "1s")
    try:
        code = worker.wait(30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert code == 0
    assert time.monotonic() - started >= 1.0
