"""CURVE mistakes name their cause on the machine where they matter: a worker whose key
the collector refuses says so itself (not only the collector's log), a wrong server key is
named as such, and a key put in the wrong folder is told where it belongs."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import pytest
import zmq
from zmq.auth import load_certificate

from zmqpipeline import Security, TaskType
from zmqpipeline.runtime.ports import free_port
from zmqpipeline.runtime.runtime import RoleRuntime
from zmqpipeline.security import KeyPolicy, generate_keys
from zmqpipeline.settings import Settings

pytestmark = pytest.mark.timeout(60)

TaskType.register_type("CM_A")


def _keys(tmp_path: Path):
    folder = tmp_path / "keys"
    server_public, _ = generate_keys(folder, "server")
    (folder / "authorized").mkdir()
    worker_public, _ = generate_keys(folder, "worker")
    return folder, server_public, worker_public


class _Lines(logging.Handler):
    """Keeps the lines logged; :attr:`said` is set by the first holding ``needle``."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle, self.lines, self.said = needle, [], threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        if self.needle in self.lines[-1]:
            self.said.set()


def _connect_to_a_refusing_server(tmp_path: Path, client: Security, server_admits: list[Path]):
    """A CURVE server (ROUTER) whose authorised folder holds ``server_admits``, and a
    client of ``client``'s keys connecting to it; returns what the client's role logged."""
    folder = tmp_path / "keys"
    authorized = folder / "authorized"
    for key in server_admits:
        shutil.copy(key, authorized)
    server = Security(folder / "server.key_secret", folder / "server.key", authorized)
    lines = _Lines("cannot work with")
    log = logging.getLogger("test.curve.client")
    log.addHandler(lines)
    port = _free_port()
    with RoleRuntime("distributor", Settings.from_env(security=server), log) as srt:
        srt.open(zmq.ROUTER, f"tcp://127.0.0.1:{port}", bind=True)
        with RoleRuntime("worker", Settings.from_env(security=client), log) as crt:
            crt.open(zmq.DEALER, f"tcp://127.0.0.1:{port}", bind=False)
            assert lines.said.wait(10), lines.lines  # the watching thread says it
    log.removeHandler(lines)
    return next(line for line in lines.lines if lines.needle in line)


def _free_port() -> int:
    return free_port("127.0.0.1")


def test_a_worker_whose_key_a_server_refuses_says_so_itself(tmp_path):
    folder, server_public, worker_public = _keys(tmp_path)
    client = Security(folder / "worker.key_secret", server_public)
    line = _connect_to_a_refusing_server(tmp_path, client, server_admits=[])
    assert "worker: cannot work with tcp://127.0.0.1:" in line
    assert "key refused" in line and "refused this host's CURVE key" in line
    assert str(worker_public) in line  # which file to copy where


def test_a_wrong_server_key_is_named_as_such(tmp_path):
    folder, _, worker_public = _keys(tmp_path)
    wrong = Security(folder / "worker.key_secret", worker_public)  # not the server's key
    line = _connect_to_a_refusing_server(tmp_path, wrong, server_admits=[worker_public])
    assert "key refused" in line and "ZMQPIPELINE_CURVE_SERVER_KEY" in line, line


def test_a_distributor_key_in_the_flat_folder_is_told_where_it_belongs(tmp_path, caplog):
    folder, server_public, _ = _keys(tmp_path)
    dist_public, _ = generate_keys(folder, "dist")
    authorized = folder / "authorized"
    shutil.copy(dist_public, authorized)  # belongs in authorized/distributor/
    policy = KeyPolicy()
    policy.add(Security(folder / "server.key_secret", server_public, authorized))
    public, _ = load_certificate(str(dist_public))
    with caplog.at_level(logging.WARNING, logger="zmqpipeline"):
        assert not policy.callback("zmqpipeline/distributor", public)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"a distributor key belongs in {authorized / 'distributor'}" in said, said
    assert "admitted as " in said and "workers" in said, said
