"""The Executor over CURVE and under ``zmqpipeline status``: a secured executor takes a
remote worker that holds an authorised key (made with ``zmqpipeline keys``) and no
worker without one; its local workers connect with its own key pair; the control
endpoint answers ``zmqpipeline status`` with the executor's run."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import executor_funcs as f
import pytest
from support.procs import free_port

from zmqpipeline import Executor, Security
from zmqpipeline.security import ENV_AUTHORIZED_KEYS, ENV_SECRET_KEY, ENV_SERVER_KEY

HERE = Path(__file__).parent
CURVE_ENV = (ENV_SECRET_KEY, ENV_SERVER_KEY, ENV_AUTHORIZED_KEYS)


def zmqpipeline(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "zmqpipeline", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)


def two_free_ports() -> int:
    """A port whose next one is free too (results come back on the next port)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def worker_env(curve: dict[str, str] | None) -> dict[str, str]:
    """The environment of a worker started as on another machine: the tests' modules on
    its path, and ``curve`` (or no CURVE variables at all)."""
    env = {k: v for k, v in os.environ.items() if k not in CURVE_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *sys.path])
    return {**env, **(curve or {})}


def start_worker(endpoint: str, curve: dict[str, str] | None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "zmqpipeline", "executor-worker", endpoint]
    return subprocess.Popen(command, env=worker_env(curve), stderr=subprocess.DEVNULL)


def end(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[Path]:
    """A server pair and an authorised worker pair, made by ``zmqpipeline keys``; a rogue
    pair that is not authorised."""
    folder = tmp_path / "keys"
    for name, role in (("server", None), ("remote", "workers"), ("rogue", None)):
        args = ["keys", str(folder), "--name", name] + (["--role", role] if role else [])
        made = zmqpipeline(*args)
        assert made.returncode == 0, made.stderr
    yield folder


def test_a_secured_executor_takes_an_authorised_remote_worker_and_no_other(keys: Path) -> None:
    security = Security(keys / "server.key_secret", keys / "server.key", keys / "authorized")
    port = two_free_ports()
    endpoint = f"tcp://127.0.0.1:{port}"
    with Executor(workers=0, endpoint=f"tcp://*:{port}", security=security) as ex:
        rogue = start_worker(
            endpoint,
            {
                ENV_SECRET_KEY: str(keys / "rogue.key_secret"),
                ENV_SERVER_KEY: str(keys / "server.key"),
            },
        )
        keyless = start_worker(endpoint, None)
        remote = None
        try:
            future = ex.submit(f.pid)
            done, _ = cf.wait([future], timeout=2.0)
            assert not done, "a worker without an authorised key ran a call"
            remote = start_worker(
                endpoint,
                {
                    ENV_SECRET_KEY: str(keys / "remote.key_secret"),
                    ENV_SERVER_KEY: str(keys / "server.key"),
                },
            )
            assert future.result(timeout=30) == remote.pid
            assert list(ex.map(f.square, range(200))) == [i * i for i in range(200)]
        finally:
            ex.shutdown(wait=True)
            for process in (rogue, keyless):
                process.kill()
                process.wait()
            if remote is not None:
                end(remote)
    assert remote.returncode == 0  # it left with the executor


def test_a_secured_executors_local_workers_connect_over_tcp_with_its_key(keys: Path) -> None:
    security = Security(keys / "server.key_secret", keys / "server.key", keys / "authorized")
    port = two_free_ports()
    with Executor(workers=2, endpoint=f"tcp://127.0.0.1:{port}", security=security) as ex:
        pids = set(ex.map(f.sleep_then, [0.01] * 40, [None] * 40)) | {
            ex.submit(f.pid).result(timeout=30) for _ in range(20)
        }
        assert set(ex.worker_pids) & pids
        assert ex.submit(f.add, 2, 3).result(timeout=30) == 5


def test_zmqpipeline_status_sees_an_executor(tmp_path: Path) -> None:
    control = f"ipc://{tmp_path}/control"
    with Executor(workers=1, control_endpoint=control) as ex:
        futures = [ex.submit(f.square, i) for i in range(30)]  # an item each
        assert [fu.result(timeout=30) for fu in futures] == [i * i for i in range(30)]
        status = zmqpipeline("status", control, "--json")
        table = zmqpipeline("status", control)
    assert status.returncode == 0, status.stderr
    snapshot = json.loads(status.stdout)
    assert snapshot["state"] == "running"
    (calls,) = snapshot["tasks"].values()
    assert calls["collected"] >= 30 and calls["handed_out"] >= 30
    assert len(snapshot["workers"]) == 1
    assert table.returncode == 0, table.stderr
    assert "zmqpipeline.executor" in table.stdout and "workers: 1" in table.stdout
