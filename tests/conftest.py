"""Shared fixtures: real processes (ended by PID), private endpoints, CURVE keys, and a
check after every test that no process, thread or ipc file was left behind."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from support.procs import Processes, free_port

from zmqpipeline import Distributor
from zmqpipeline.security import (
    ENV_AUTHORIZED_KEYS,
    ENV_SECRET_KEY,
    ENV_SERVER_KEY,
    Security,
    generate_keys,
)

# Fast liveness for every test (0.2 s x 5 misses = 1 s), unless the caller chose otherwise.
os.environ.setdefault("ZMQPIPELINE_HEARTBEAT_INTERVAL_S", "0.2")
os.environ.setdefault("ZMQPIPELINE_LIVENESS_MISSES", "5")


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
    stray = [
        t
        for t in threading.enumerate()
        if t not in threads_before and t.is_alive() and not _pyzmq_gc(t)
    ]
    assert not stray, f"threads left running: {stray}"
    ipc_files = list(tmp_path.rglob("*.ipc"))
    assert not ipc_files, f"ipc files left behind: {ipc_files}"


# -- CURVE keys and a control endpoint (security and control tests) ---------------------------


@pytest.fixture
def keys(tmp_path: Path) -> SimpleNamespace:
    """A server pair, three authorised clients, one rogue pair not in ``authorized/``."""
    folder = tmp_path / "keys"
    server_public, server_secret = generate_keys(folder, "server")
    authorized = folder / "authorized"
    authorized.mkdir()
    for name in ("worker1", "worker2", "meta"):
        public, _ = generate_keys(folder, name)
        shutil.copy(public, authorized)
    generate_keys(folder, "rogue")

    def env(name: str) -> dict[str, str]:
        return {
            ENV_SECRET_KEY: str(folder / f"{name}.key_secret"),
            ENV_SERVER_KEY: str(server_public),
            ENV_AUTHORIZED_KEYS: str(authorized),
        }

    def security(name: str) -> Security:
        return Security(folder / f"{name}.key_secret", server_public, authorized)

    return SimpleNamespace(
        dir=folder,
        authorized=authorized,
        server_public=server_public,
        server_secret=server_secret,
        env=env,
        security=security,
    )


@pytest.fixture
def ep(endpoints, tmp_path):
    kind = endpoints.kind
    endpoints.control = (
        f"tcp://127.0.0.1:{free_port()}" if kind == "tcp" else f"ipc://{tmp_path}/control.ipc"
    )
    endpoints.log = tmp_path / "items.log"
    return endpoints


@pytest.fixture
def operator_keys(keys):
    """The ``keys`` plus one operator pair in ``authorized/operators/``."""
    (keys.authorized / "operators").mkdir()
    public, _ = generate_keys(keys.dir, "operator")
    shutil.copy(public, keys.authorized / "operators")
    return keys


# -- service endpoints ----------------------------------------------------------------------


@pytest.fixture
def svc(tmp_path: Path) -> SimpleNamespace:
    """Service endpoints: ipc files in the test's tmp_path."""
    return SimpleNamespace(front=f"ipc://{tmp_path}/front.ipc", back=f"ipc://{tmp_path}/back.ipc")


def _pyzmq_gc(thread: threading.Thread) -> bool:
    """pyzmq's garbage-collector thread: started by the first zero-copy send of the
    process (big values go as frames), it lives as long as the process, by design."""
    return type(thread).__name__ == "GarbageCollectorThread"
