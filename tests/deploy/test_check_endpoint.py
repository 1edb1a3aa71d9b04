"""``zmqpipeline check``: each of its answers against real sockets, each within 10 s.

The distributor is the example app's (examples/deploy/app.py) as a real process over tcp
with CURVE; "no route" runs the check inside network namespaces of tests/netbed.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import msgpack  # type: ignore[import-untyped]
import pytest
import zmq
from deploy_support import APP, Keys, Roles, app_env, free_ports, make_keys, wait_listening
from support.netbed import netbed  # noqa: F401  (the fixture)

from zmqpipeline import Security
from zmqpipeline.cli.check import check_endpoint
from zmqpipeline.protocol import RESET, VERSION
from zmqpipeline.security import ENV_SECRET_KEY

LIMIT_S = 10.0


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Roles]:
    roles = Roles(tmp_path)
    try:
        yield roles
    finally:
        roles.close()


@pytest.fixture
def distributor(started: Roles, keys: Keys) -> tuple[str, subprocess.Popen[str]]:
    """The example's distributor with CURVE on a free port (no collector, no worker)."""
    ports = free_ports(3)
    process = started.start(["distributor", str(APP)], {**app_env(ports), **keys.server}, "dist")
    wait_listening(ports[0])
    return f"tcp://127.0.0.1:{ports[0]}", process


def worker_security(keys: Keys) -> Security:
    return Security(keys.folder / "worker.key_secret", keys.folder / "server.key")


def check_cli(endpoint: str, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ZMQPIPELINE_CURVE")}
    return subprocess.run(
        [sys.executable, "-m", "zmqpipeline", "check", endpoint, *extra],
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=LIMIT_S + 5,
    )


def test_ok_names_the_protocol_version_of_a_real_distributor(distributor, keys: Keys) -> None:
    done = check_cli(distributor[0], keys.worker)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": OK - a distributor answers (RESET)" in done.stdout
    assert f"protocol version {VERSION}, CURVE key accepted" in done.stdout


def test_refused_when_nothing_listens(keys: Keys) -> None:
    (port,) = free_ports(1)
    done = check_cli(f"tcp://127.0.0.1:{port}", keys.worker)
    assert done.returncode == 1
    assert f"REFUSED - nothing listens on 127.0.0.1 port {port}" in done.stdout


def test_key_refused_names_this_hosts_key(distributor, keys: Keys) -> None:
    done = check_cli(distributor[0], keys.stranger)
    assert done.returncode == 1
    public = Security(keys.stranger[ENV_SECRET_KEY]).public_key.decode()
    assert f"KEY REFUSED - the endpoint refused this host's CURVE key {public}" in done.stdout
    assert "stranger.key into the server's authorised keys directory" in done.stdout


def test_key_refused_when_this_host_has_no_key(distributor) -> None:
    verdict = check_endpoint(distributor[0], timeout_s=LIMIT_S)
    assert (verdict.cause, verdict.seconds < LIMIT_S) == ("key refused", True), verdict.line()
    assert "the endpoint wants CURVE and this host has no key" in verdict.detail


def test_key_refused_with_the_wrong_server_key(distributor, keys: Keys) -> None:
    """This host names its own public key as the server's."""
    mine = Security(keys.folder / "worker.key_secret", keys.folder / "worker.key")
    verdict = check_endpoint(distributor[0], security=mine, timeout_s=LIMIT_S)
    assert verdict.cause == "key refused", verdict.line()
    assert "is not that server's public key" in verdict.detail


def test_wrong_version_a_real_distributor_answers_an_older_worker(distributor, keys: Keys) -> None:
    """The check speaks version VERSION - 1, as a worker of an older release would: the
    distributor drops the heartbeat and answers with a RESET of its own version."""
    security = worker_security(keys)
    verdict = check_endpoint(distributor[0], security=security, version=VERSION - 1)
    assert verdict.cause == "wrong version", verdict.line()
    assert f"speaks protocol version {VERSION}, this host speaks {VERSION - 1}" in verdict.detail
    assert verdict.seconds < LIMIT_S


def test_wrong_version_of_a_peer_of_another_release(tmp_path: Path) -> None:
    """A stand-in for a distributor of another release (a real ROUTER in a thread that
    answers every message with a RESET of version VERSION + 1): none exists to start."""
    ctx: zmq.Context[object] = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def answer() -> None:
        if router.poll(LIMIT_S * 1000):
            identity = router.recv_multipart()[0]
            router.send_multipart([identity, bytes((VERSION + 1, RESET)), msgpack.packb([])])

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        verdict = check_endpoint(f"tcp://127.0.0.1:{port}")
    finally:
        thread.join(LIMIT_S)
        router.close(linger=0)
        ctx.term()
    assert verdict.cause == "wrong version", verdict.line()
    assert f"speaks protocol version {VERSION + 1}, this host speaks {VERSION}" in verdict.detail


def test_wrong_version_for_a_collectors_endpoint(started: Roles, keys: Keys) -> None:
    """A worker's socket cannot work with a collector's endpoint; --collector can."""
    ports = free_ports(3)
    started.start(["collector", f"{APP}:Results"], {**app_env(ports), **keys.server}, "coll")
    wait_listening(ports[1])
    endpoint = f"tcp://127.0.0.1:{ports[1]}"
    security = worker_security(keys)
    verdict = check_endpoint(endpoint, security=security, timeout_s=LIMIT_S)
    assert verdict.cause in ("wrong version", "key refused"), verdict.line()
    assert "a collector's endpoint? check it with --collector" in verdict.detail
    done = check_cli(endpoint, keys.worker, "--collector")
    assert done.returncode == 0, done.stdout
    assert "OK - reachable, CURVE key accepted (a collector never answers" in done.stdout


def test_silent_when_the_distributor_is_stopped(distributor, keys: Keys) -> None:
    """SIGSTOP: the kernel still accepts the connection, no handshake comes."""
    endpoint, process = distributor
    os.kill(process.pid, signal.SIGSTOP)
    try:
        done = check_cli(endpoint, keys.worker, "--timeout", "2")
    finally:
        os.kill(process.pid, signal.SIGCONT)
    assert done.returncode == 1
    assert "SILENT - connected, but no ZeroMQ handshake came" in done.stdout


def test_silent_when_the_port_is_not_zeromq() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)  # accepted by the kernel, never answered
    try:
        verdict = check_endpoint(f"tcp://127.0.0.1:{listener.getsockname()[1]}", timeout_s=1.5)
    finally:
        listener.close()
    assert verdict.cause == "silent", verdict.line()
    assert 1.4 < verdict.seconds < LIMIT_S


def test_no_route_from_a_host_without_one(netbed) -> None:  # noqa: F811
    """Inside a namespace host of the bed: an address no route leads to (ENETUNREACH at
    once) and one on its own network that no host answers (EHOSTUNREACH after ARP)."""
    host = netbed(1).hosts[0]
    absent = host.addr.rsplit(".", 1)[0] + ".250"
    for address in ("192.0.2.1", absent):
        process = host.popen(
            [sys.executable, "-m", "zmqpipeline", "check", f"tcp://{address}:5555", "-t", "9"],
            stdout=subprocess.PIPE,
            text=True,
        )
        out, _ = process.communicate(timeout=LIMIT_S + 5)
        assert process.returncode == 1, out
        assert f"NO ROUTE - no route to {address}" in out
        seconds = float(out.rsplit("(", 1)[1].split()[0])
        assert seconds < LIMIT_S


def test_silent_behind_a_firewall_that_drops(netbed) -> None:  # noqa: F811
    """Two hosts of the bed, partitioned (every packet between them dropped): the TCP
    connect gets no answer at all."""
    bed = netbed(2)
    here, there = bed.hosts
    bed.partition(here, there)
    argv = [sys.executable, "-m", "zmqpipeline", "check", f"tcp://{there.addr}:5555", "-t", "2"]
    process = here.popen(argv, stdout=subprocess.PIPE, text=True)
    out, _ = process.communicate(timeout=LIMIT_S)
    assert process.returncode == 1, out
    assert f"SILENT - no answer to a TCP connect to {there.addr} port 5555 in time" in out
