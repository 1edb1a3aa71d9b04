"""Shared fixtures: real processes (ended by PID), private endpoints, and a check after
every test that no process, thread or ipc file was left behind."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from zmqpipeline import Distributor

# Fast liveness for every test (0.2 s x 5 misses = 1 s), unless the caller chose otherwise.
os.environ.setdefault("ZMQPIPELINE_HEARTBEAT_INTERVAL_S", "0.2")
os.environ.setdefault("ZMQPIPELINE_LIVENESS_MISSES", "5")

FORK = multiprocessing.get_context("fork")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """Starts callables as forked processes and guarantees they end (by PID)."""

    def __init__(self) -> None:
        self.started: dict[str, Any] = {}

    def start(self, name: str, target: Callable[[], Any]) -> Any:
        process = FORK.Process(target=_child, args=(target,), name=name)
        process.start()
        self.started[name] = process
        return process

    def join(self, timeout: float = 30.0) -> dict[str, int | None]:
        """Wait for every process; return name -> exit code (None if still running)."""
        import time

        deadline = time.monotonic() + timeout
        for process in self.started.values():
            process.join(max(0.0, deadline - time.monotonic()))
        return {name: p.exitcode for name, p in self.started.items()}

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        os.kill(self.started[name].pid, sig)

    def cleanup(self) -> None:
        for process in self.started.values():
            if process.exitcode is None and process.pid is not None:
                try:
                    os.kill(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            process.join(5)


def _child(target: Callable[[], Any]) -> None:
    target()


@pytest.fixture
def procs():
    processes = Processes()
    try:
        yield processes
    finally:
        processes.cleanup()


@pytest.fixture(params=["ipc", "tcp"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def endpoints(tmp_path: Path, request: pytest.FixtureRequest) -> SimpleNamespace:
    """Fresh endpoints over ``transport`` if the test asks for it, else ipc."""
    kind = request.getfixturevalue("transport") if "transport" in request.fixturenames else "ipc"

    def make(name: str) -> str:
        if kind == "tcp":
            return f"tcp://127.0.0.1:{free_port()}"
        return f"ipc://{tmp_path}/{name}.ipc"

    return SimpleNamespace(
        kind=kind,
        worker=make("worker"),
        worker2=make("worker2"),
        collector=make("collector"),
        ack=make("ack"),
        meta=make("meta"),
        results=tmp_path / "results.json",
        report=tmp_path / "report.json",
    )


@pytest.fixture(autouse=True)
def nothing_left_behind(tmp_path: Path):
    threads_before = set(threading.enumerate())
    Distributor.clear_registered_tasks()
    yield
    Distributor.clear_registered_tasks()
    leftovers = multiprocessing.active_children()
    for child in leftovers:
        child.kill()
        child.join(5)
    assert not leftovers, f"processes left running: {leftovers}"
    stray = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert not stray, f"threads left running: {stray}"
    ipc_files = list(tmp_path.rglob("*.ipc"))
    assert not ipc_files, f"ipc files left behind: {ipc_files}"
