"""Helpers of the deployment tests: CURVE key folders, the example app's roles as real
processes (ended by pid), free loopback ports."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zmqpipeline.runtime.ports import free_port
from zmqpipeline.security import ENV_AUTHORIZED_KEYS, ENV_SECRET_KEY, ENV_SERVER_KEY, generate_keys

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "examples" / "deploy"
APP = DEPLOY / "app.py"

__all__ = ["APP", "DEPLOY", "ROOT", "Keys", "Roles", "free_ports", "make_keys"]


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports free right now (below the ephemeral range)."""
    return [free_port("127.0.0.1") for _ in range(n)]


@dataclass
class Keys:
    """A shared key folder as docs/security.md lays it out."""

    folder: Path
    server: dict[str, str]  # the binding roles' environment
    worker: dict[str, str]  # an authorised worker's
    stranger: dict[str, str]  # a worker whose key nobody authorised


def make_keys(folder: Path) -> Keys:
    """server and worker pairs, the worker's public key authorised as a worker; and a
    stranger's pair, authorised nowhere."""
    server_public, server_secret = generate_keys(folder, "server")
    worker_public, worker_secret = generate_keys(folder, "worker")
    _, stranger_secret = generate_keys(folder / "elsewhere", "stranger")
    workers = folder / "authorized" / "workers"
    workers.mkdir(parents=True)
    shutil.copyfile(worker_public, workers / worker_public.name)
    return Keys(
        folder,
        {
            ENV_SECRET_KEY: str(server_secret),
            ENV_SERVER_KEY: str(server_public),
            ENV_AUTHORIZED_KEYS: str(folder / "authorized"),
        },
        {ENV_SECRET_KEY: str(worker_secret), ENV_SERVER_KEY: str(server_public)},
        {ENV_SECRET_KEY: str(stranger_secret), ENV_SERVER_KEY: str(server_public)},
    )


def app_env(ports: Sequence[int], items: int = 100, item_s: float = 0.01) -> dict[str, str]:
    """The example app's variables on loopback ``ports`` (task, result, ACK)."""
    task, result, ack = ports
    return {
        "DEPLOY_HEAD": "127.0.0.1",
        "DEPLOY_TASK_PORT": str(task),
        "DEPLOY_RESULT_PORT": str(result),
        "DEPLOY_ACK_PORT": str(ack),
        "DEPLOY_ITEMS": str(items),
        "DEPLOY_ITEM_S": str(item_s),
    }


@dataclass
class Roles:
    """``zmqpipeline`` commands started as processes; :meth:`close` ends them by pid."""

    workdir: Path
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self, argv: Sequence[str], env: dict[str, str], name: str) -> subprocess.Popen[str]:
        full = {k: v for k, v in os.environ.items() if not k.startswith("ZMQPIPELINE_CURVE")}
        full.update(env)
        out = open(self.workdir / f"{name}.out", "w")
        process = subprocess.Popen(
            [sys.executable, "-m", "zmqpipeline", *argv],
            env=full,
            cwd=self.workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out.close()
        self.started.append(process)
        return process

    def output(self, name: str) -> str:
        return (self.workdir / f"{name}.out").read_text()

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)  # a test may have stopped it
                process.terminate()
        for process in self.started:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def roles(workdir: Path) -> Iterator[Roles]:
    """A :class:`Roles` closed at the end (for a fixture)."""
    started = Roles(workdir)
    try:
        yield started
    finally:
        started.close()


def wait_listening(port: int, timeout_s: float = 10.0) -> None:
    """Return once something accepts TCP connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listens on 127.0.0.1:{port} after {timeout_s} s"
                ) from exc
            time.sleep(0.02)
