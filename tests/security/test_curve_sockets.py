"""CURVE on the sockets: private ipc files, unauthorised senders refused, each bound
socket admitting only its role, a refused worker that says so, no thread left behind."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import stat
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import zmq
import zmq.auth
from support.curve import HANDSHAKE_FAILED, NULL_REFUSED, with_env
from support.pipelines import make_task, make_worker
from support.procs import FORK, free_port

import zmqpipeline as zp
from zmqpipeline.runtime.transport import close_sockets, new_context, open_socket
from zmqpipeline.security import (
    Security,
    generate_keys,
)
from zmqpipeline.settings import Settings

pytestmark = pytest.mark.timeout(60)


# -- transport ----------------------------------------------------------------------------------


def test_bound_ipc_files_are_private(tmp_path):
    ctx = new_context()
    path = tmp_path / "private" / "sock.ipc"
    try:
        sock = open_socket(ctx, zmq.PULL, f"ipc://{path}", bind=True, settings=Settings())
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        close_sockets([sock])
    finally:
        ctx.term()


def _monitor(sock: zmq.Socket[Any]) -> zmq.Socket[Any]:
    return sock.get_monitor_socket(HANDSHAKE_FAILED | zmq.EVENT_HANDSHAKE_SUCCEEDED)


def _next_event(monitor: zmq.Socket[Any], timeout_s: float = 10.0) -> int:
    from zmq.utils.monitor import recv_monitor_message

    assert monitor.poll(int(timeout_s * 1000)), "no handshake event"
    return int(recv_monitor_message(monitor)["event"])


def test_unauthorised_senders_cannot_reach_a_secured_socket(keys):
    """What a rogue worker's result would meet at the collector: no handshake, no message."""
    server_ctx, rogue_ctx = new_context(), zmq.Context()
    server = open_socket(
        server_ctx,
        zmq.PULL,
        f"tcp://127.0.0.1:{free_port()}",
        bind=True,
        settings=Settings(security=keys.security("server")),
    )
    endpoint = server.getsockopt_string(zmq.LAST_ENDPOINT)
    rogue_sec = Security(keys.dir / "rogue.key_secret", keys.server_public)
    senders: list[zmq.Socket[Any]] = []
    try:
        expected = {"no keys": NULL_REFUSED, "unlisted key": {zmq.EVENT_HANDSHAKE_FAILED_AUTH}}
        for name in expected:
            sender = rogue_ctx.socket(zmq.PUSH)
            sender.linger = 0
            if name == "unlisted key":
                rogue_sec.make_client(sender, endpoint, "rogue")
            monitor = _monitor(sender)
            senders += [sender, monitor]
            sender.connect(endpoint)
            sender.send(f"forged by {name}".encode())
            assert _next_event(monitor) in expected[name], name
        good = open_socket(
            rogue_ctx,
            zmq.PUSH,
            endpoint,
            bind=False,
            settings=Settings(security=keys.security("worker1")),
            role="worker",
        )
        senders.append(good)
        good.send(b"genuine")
        assert server.poll(10_000) and server.recv() == b"genuine"
        assert not server.poll(300), "a refused sender got a message through"
    finally:
        for sock in senders:
            sock.close(linger=0)
        rogue_ctx.term()
        close_sockets([server])
        server_ctx.term()  # stops the authenticator: the fixture checks no thread is left


@pytest.mark.parametrize("socket_type", [zmq.PULL, zmq.DEALER], ids=["PULL", "DEALER"])
def test_a_worker_key_cannot_take_acks_nor_act_as_the_distributor(keys, socket_type):
    """The collector's ACK endpoint admits the distributor role only: a worker's key is
    refused there (no ACK stolen, no START/SKIP/END forged); the server key pair and a key
    in ``authorized/distributor/`` are admitted."""
    distributor_dir = keys.authorized / "distributor"
    distributor_dir.mkdir()
    public, _ = generate_keys(keys.dir, "dist2")
    shutil.copy(public, distributor_dir)
    refused = {zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL}
    _expect_handshakes(
        keys,
        "distributor",
        [
            ("worker1", "worker1", socket_type, refused),
            ("server", "server", zmq.DEALER, {zmq.EVENT_HANDSHAKE_SUCCEEDED}),
            ("dist2", "dist2", zmq.DEALER, {zmq.EVENT_HANDSHAKE_SUCCEEDED}),
        ],
    )


@pytest.mark.parametrize(
    "admit, allowed, refused",
    [("clients", "clients", "workers"), ("operators", "operators", "workers")],
    ids=["push endpoint", "control endpoint"],
)
def test_each_bound_socket_admits_only_its_role(keys, admit, allowed, refused):
    """The push and control endpoints take only keys of their role: a worker's key (in
    ``authorized/workers/``) is refused there, a key of the role is admitted."""
    for role in (allowed, refused):
        folder = keys.authorized / role
        folder.mkdir(exist_ok=True)
        public, _ = generate_keys(keys.dir, f"only-{role}")
        shutil.copy(public, folder)
    refusal = {zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL}
    _expect_handshakes(
        keys,
        admit,
        [
            (f"only-{refused}", refused, zmq.DEALER, refusal),
            (f"only-{allowed}", allowed, zmq.DEALER, {zmq.EVENT_HANDSHAKE_SUCCEEDED}),
        ],
    )


def _expect_handshakes(
    keys: SimpleNamespace, admit: str, peers: list[tuple[str, str, int, set[int]]]
) -> None:
    """Bind a ROUTER that admits the ``admit`` role with the server's keys; connect each
    peer ``(key name, role it claims, socket type, handshake events allowed)`` and check
    the handshake ends in one of them."""
    server_ctx, peer_ctx = new_context(), zmq.Context()
    bound = open_socket(
        server_ctx,
        zmq.ROUTER,
        f"tcp://127.0.0.1:{free_port()}",
        bind=True,
        settings=Settings(security=keys.security("server")),
        admit=admit,
    )
    endpoint = bound.getsockopt_string(zmq.LAST_ENDPOINT)
    opened: list[zmq.Socket[Any]] = []
    try:
        for name, role, socket_type, expected in peers:
            peer = peer_ctx.socket(socket_type)
            peer.linger = 0
            keys.security(name).make_client(peer, endpoint, role)
            monitor = _monitor(peer)
            opened += [peer, monitor]
            peer.connect(endpoint)
            assert _next_event(monitor) in expected, name
    finally:
        for sock in opened:
            sock.close(linger=0)
        peer_ctx.term()
        close_sockets([bound])
        server_ctx.term()


def test_a_worker_refused_by_curve_says_so_and_stops_on_sigterm(procs, endpoints, keys, caplog):
    """A worker whose key is not authorised never connects; it warns that it cannot reach
    the distributor (naming the key as a cause) and a SIGTERM still ends it."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    os.environ["ZMQPIPELINE_CURVE_SECRET_KEY"] = str(keys.server_secret)
    task = make_task(endpoint, 10)
    worker = make_worker(endpoint, f"tcp://127.0.0.1:{free_port()}")
    warned = FORK.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "CURVE key" in record.getMessage():
                warned.set()

    def rogue() -> None:
        logging.getLogger("zmqpipeline.worker").addHandler(Watch())
        os.environ["ZMQPIPELINE_HEARTBEAT_INTERVAL_S"] = "1"  # liveness 5 s: warns at once
        worker().run()

    procs.start("distributor", with_env(keys.env("server"), lambda: run_distributor_at(task)))
    procs.start("rogue", with_env(keys.env("rogue"), rogue))
    assert warned.wait(30), "the refused worker never said why it waits"
    procs.kill("rogue", signal.SIGTERM)
    procs.started["rogue"].join(10)
    assert procs.started["rogue"].exitcode == 0
    procs.kill("distributor", signal.SIGTERM)
    procs.started["distributor"].join(10)
    os.environ.pop("ZMQPIPELINE_CURVE_SECRET_KEY")


def run_distributor_at(task: type) -> None:
    zp.Distributor(
        f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}", tasks=[task]
    ).run()


def test_roles_given_security_in_code_leave_no_thread_behind(keys, free_tcp):
    """Distributor, collector and worker as threads of this process, keys given in code
    (class attributes, the distributor's ``security=``): the run completes and every
    authenticator thread is gone after."""
    task_ep, collector_ep, ack_ep = free_tcp(), free_tcp(), free_tcp()
    task = make_task(task_ep, 30)
    worker_cls = make_worker(task_ep, collector_ep)

    class Quiet(zp.Collector):
        endpoint = zp.EndpointAddress(collector_ep)
        ack_endpoint = zp.EndpointAddress(ack_ep)
        security = keys.security("server")
        seen: ClassVar[list[int]] = []

        def handle_collection(self, data, task_type, msgtype):
            self.seen.append(data["i"])

    worker_cls.security = keys.security("worker1")
    collector = Quiet()
    worker = worker_cls()
    dist = zp.Distributor(collector_ep, ack_ep, tasks=[task], security=keys.security("server"))
    reports: list[Any] = []
    threads = [
        threading.Thread(target=collector.run),
        threading.Thread(target=worker.run),
        threading.Thread(target=lambda: reports.append(dist.run())),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert reports and reports[0].ok and reports[0].collected == {"FIRST": 30}
    assert sorted(Quiet.seen) == list(range(1, 31))


@pytest.fixture
def free_tcp() -> Callable[[], str]:
    return lambda: f"tcp://127.0.0.1:{free_port()}"
