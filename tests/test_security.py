"""CURVE security: keys, one configuration, encrypted and authenticated tcp for every role.

Pipelines run as real forked processes over tcp on 127.0.0.1; each child gets its keys
through the documented ``ZMQPIPELINE_CURVE_*`` variables (set in the child only)."""

from __future__ import annotations

import logging
import os
import queue
import selectors
import shutil
import signal
import socket
import stat
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import zmq
import zmq.auth
from conftest import FORK, free_port
from pipelines import load, make_collector, make_task, make_worker, run_distributor
from test_cli import write_pipeline, zmqpipeline

import zmqpipeline as zp
from zmqpipeline.errors import ConfigurationError
from zmqpipeline.security import (
    ENV_AUTHORIZED_KEYS,
    ENV_SECRET_KEY,
    ENV_SERVER_KEY,
    Security,
    generate_keys,
)
from zmqpipeline.settings import Settings
from zmqpipeline.runtime.transport import close_sockets, new_context, open_socket

pytestmark = pytest.mark.timeout(60)

CURVE_ENV = (ENV_SECRET_KEY, ENV_SERVER_KEY, ENV_AUTHORIZED_KEYS)
MARKER = "plaintext-marker-3b9e61"
HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
# A NULL (keyless) peer of a CURVE server: the server drops it during the greeting.
NULL_REFUSED = {zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL}
# What a refused client may see: the server can also close the connection before the
# client has read the greeting, which the client sees as a plain disconnect.
REFUSED = HANDSHAKE_FAILED | zmq.EVENT_DISCONNECTED


# -- helpers ----------------------------------------------------------------------------------


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


def with_env(env: dict[str, str] | None, target: Callable[[], Any]) -> Callable[[], Any]:
    """``target`` run with ``env`` as its CURVE configuration (None: none) — in the child."""

    def run() -> Any:
        for name in CURVE_ENV:
            os.environ.pop(name, None)
        os.environ.update(env or {})
        return target()

    return run


def run_as(cls: type, worker_id: str) -> Callable[[], None]:
    def run() -> None:
        worker = cls()
        worker.worker_id = worker_id.encode()
        worker.run()

    return run


def exit_codes(procs: Any, names: list[str], timeout: float = 30.0) -> dict[str, int | None]:
    for name in names:
        procs.started[name].join(timeout)
    return {name: procs.started[name].exitcode for name in names}


def check_exactly_once(results: dict[str, Any], n: int) -> None:
    seen = Counter(item[1]["i"] for item in results["items"])
    assert sorted(seen) == list(range(1, n + 1)) and set(seen.values()) == {1}


def marker_task(endpoint: str, n_items: int) -> type[zp.Task]:
    base = make_task(endpoint, n_items)

    class MarkerTask(base):  # type: ignore[misc,valid-type]
        def handle(self, data: Any, address: Any, msgtype: Any) -> dict[str, Any]:
            return {**super().handle(data, address, msgtype), "secret": MARKER}

    return MarkerTask


class Relay:
    """A man in the middle on 127.0.0.1: connections to :attr:`port` are forwarded to
    ``target_port`` and every byte seen either way is kept in :attr:`captured`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.captured = bytearray()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="test-relay")
        self._thread.start()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._wake_w.send(b"x")
        self._thread.join()
        for sock in (self.listener, self._wake_r, self._wake_w):
            sock.close()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        other: dict[socket.socket, socket.socket] = {}

        def drop(sock: socket.socket) -> None:
            for s in (sock, other.get(sock)):
                if s is not None and s in other:
                    selector.unregister(s)
                    other.pop(s)
                    s.close()

        try:
            while True:
                for key, _ in selector.select():
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._wake_r:
                        return
                    if sock is self.listener:
                        client, _ = sock.accept()
                        try:
                            upstream = socket.create_connection(("127.0.0.1", self.target_port))
                        except OSError:
                            client.close()
                            continue
                        other[client], other[upstream] = upstream, client
                        selector.register(client, selectors.EVENT_READ)
                        selector.register(upstream, selectors.EVENT_READ)
                        continue
                    if sock not in other:
                        continue
                    try:
                        data = sock.recv(65536)
                        if data:
                            self.captured += data
                            other[sock].sendall(data)
                    except OSError:
                        data = b""
                    if not data:
                        drop(sock)
        finally:
            for sock in list(other):
                sock.close()
            selector.close()


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


# -- keys -------------------------------------------------------------------------------------


def test_keys_command_writes_a_certificate_pair_with_a_private_secret(tmp_path):
    folder = tmp_path / "new" / "keys"
    result = zmqpipeline("keys", str(folder), "--name", "alice")
    assert result.returncode == 0, result.stderr
    public, secret = folder / "alice.key", folder / "alice.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    pub_key, no_secret = zmq.auth.load_certificate(public)
    same_pub, sec_key = zmq.auth.load_certificate(secret)
    assert no_secret is None and sec_key is not None and pub_key == same_pub
    assert zmq.curve_public(sec_key) == pub_key
    assert sorted(p.name for p in folder.iterdir()) == ["alice.key", "alice.key_secret"]

    again = zmqpipeline("keys", str(folder), "--name", "alice")
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "already exists" in again.stderr
    assert zmq.auth.load_certificate(secret)[1] == sec_key, "an existing pair is kept"
    forced = zmqpipeline("keys", str(folder), "--name", "alice", "--force")
    assert forced.returncode == 0 and zmq.auth.load_certificate(secret)[1] != sec_key


def test_keys_command_authorises_a_role(tmp_path):
    result = zmqpipeline("keys", str(tmp_path), "--name", "ops", "--role", "operators")
    assert result.returncode == 0, result.stderr
    authorised = tmp_path / "authorized" / "operators" / "ops.key"
    assert authorised.read_bytes() == (tmp_path / "ops.key").read_bytes()
    server_public, _ = generate_keys(tmp_path, "server")
    security = Security(tmp_path / "server.key_secret", server_public, tmp_path / "authorized")
    ops_key = Security(tmp_path / "ops.key_secret").public_key
    assert security.admits(ops_key, "operators")
    assert not security.admits(ops_key, "workers") and not security.admits(ops_key, "distributor")


def test_key_names_with_path_separators_are_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="key name"):
        generate_keys(tmp_path, "../escape")


# -- mis-configuration: one clear line, at start -------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo[ConfigurationError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_missing_key_file_is_named(keys):
    missing = keys.dir / "nobody.key_secret"
    with pytest.raises(ConfigurationError) as exc:
        Security(missing, keys.server_public, keys.authorized)
    assert str(missing) in _one_line(exc) and "no such file" in str(exc.value)


def test_secret_key_where_a_public_one_is_expected_is_refused(keys):
    with pytest.raises(ConfigurationError, match="secret key where a public one") as exc:
        Security(keys.server_secret, keys.server_secret, keys.authorized)
    assert str(keys.server_secret) in _one_line(exc)


def test_secret_key_among_the_authorised_keys_is_refused(keys):
    shutil.copy(keys.dir / "rogue.key_secret", keys.authorized / "leaked.key")
    with pytest.raises(ConfigurationError, match=r"leaked\.key: holds a secret key") as exc:
        Security(keys.server_secret, keys.server_public, keys.authorized)
    _one_line(exc)


def test_public_key_where_the_secret_one_is_expected_is_refused(keys):
    with pytest.raises(ConfigurationError, match="holds only a public key") as exc:
        Security(keys.server_public, keys.server_public)
    _one_line(exc)


def test_file_that_is_not_a_certificate_is_refused(keys, tmp_path):
    junk = tmp_path / "junk.key"
    junk.write_text("hello\n")
    with pytest.raises(ConfigurationError, match="not a ZeroMQ certificate") as exc:
        Security(keys.server_secret, junk)
    assert str(junk) in _one_line(exc)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_key_file_is_named(keys):
    os.chmod(keys.server_secret, 0)
    with pytest.raises(ConfigurationError, match="cannot be read") as exc:
        Security(keys.server_secret)
    assert str(keys.server_secret) in _one_line(exc)


def test_missing_authorised_directory_is_named(keys, tmp_path):
    with pytest.raises(ConfigurationError, match="no such directory") as exc:
        Security(keys.server_secret, keys.server_public, tmp_path / "absent")
    _one_line(exc)


def test_libzmq_without_curve_fails_at_start(keys, monkeypatch):
    monkeypatch.setattr(zmq, "has", lambda capability: capability != "curve")
    with pytest.raises(ConfigurationError, match="built without CURVE") as exc:
        Security(keys.server_secret)
    _one_line(exc)
    with pytest.raises(ConfigurationError, match="built without CURVE"):
        generate_keys(keys.dir, "later")


def test_environment_names_the_configuration(keys, monkeypatch):
    for name in CURVE_ENV:
        monkeypatch.delenv(name, raising=False)
    assert Settings.from_env().security is None
    for name, value in keys.env("worker1").items():
        monkeypatch.setenv(name, value)
    security = Settings.from_env().security
    assert security == keys.security("worker1")
    assert (
        security is not None
        and security.server_key == zmq.auth.load_certificate(keys.server_public)[0]
    )
    monkeypatch.delenv(ENV_SECRET_KEY)
    with pytest.raises(ConfigurationError, match=f"{ENV_SECRET_KEY} is not"):
        Settings.from_env()


def test_role_launched_with_a_bad_key_says_so_in_one_line(tmp_path, monkeypatch):
    folder = write_pipeline(tmp_path / "job")
    monkeypatch.setenv(ENV_SECRET_KEY, str(tmp_path / "missing.key_secret"))
    result = zmqpipeline("worker", "worker.py:JobWorker", cwd=folder, timeout=20)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "missing.key_secret: no such file" in result.stderr


def test_sockets_without_the_key_they_need_are_refused(keys, tmp_path):
    ctx = new_context()
    try:
        client_only = Settings.from_env(security=Security(keys.dir / "worker1.key_secret"))
        with pytest.raises(ConfigurationError, match="server's public key is not set"):
            open_socket(ctx, zmq.PUSH, "tcp://127.0.0.1:5999", bind=False, settings=client_only)
        with pytest.raises(ConfigurationError, match="no authorised keys directory"):
            open_socket(
                ctx, zmq.PULL, f"tcp://127.0.0.1:{free_port()}", bind=True, settings=client_only
            )
        # ipc is left as it is: no keys needed
        sock = open_socket(
            ctx, zmq.PULL, f"ipc://{tmp_path}/ok.ipc", bind=True, settings=client_only
        )
        close_sockets([sock])
    finally:
        ctx.term()


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
    from conftest import free_port

    return lambda: f"tcp://127.0.0.1:{free_port()}"


# -- whole pipelines over tcp -----------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp"])
def test_secured_pipeline_over_tcp_collects_every_item(procs, endpoints, transport, keys):
    class Meta(zp.MetaDataWorker):
        endpoint = endpoints.meta

        def get_metadata(self):
            return {"v": "secured-meta"}

    n = 200
    task = make_task(endpoints.worker, n)
    single = make_worker(endpoints.worker, endpoints.collector)
    threaded = make_worker(endpoints.worker, endpoints.collector, threads=4)
    collector = make_collector(endpoints)
    procs.start("collector", with_env(keys.env("server"), lambda: collector().run()))
    procs.start("single", with_env(keys.env("worker1"), run_as(single, "single")))
    procs.start("threaded", with_env(keys.env("worker2"), run_as(threaded, "threaded")))
    procs.start("metadata", with_env(keys.env("meta"), lambda: Meta().run()))
    procs.start(
        "distributor",
        with_env(keys.env("server"), lambda: run_distributor(endpoints, [task], metadata=True)),
    )
    codes = procs.join(30)
    assert codes == {name: 0 for name in codes}, codes
    results, report = load(endpoints.results), load(endpoints.report)
    check_exactly_once(results, n)
    assert results["metadata"] == {"v": "secured-meta"}
    assert report["collected"] == {"FIRST": n} and report["failed"] == []
    assert set(report["per_worker"]) <= {"single", "threaded"}
    assert sum(w["collected"] for w in report["workers"]) == n


def _rogue(worker_cls: type, worker_id: str, refused: Any, got_work: Any) -> Callable[[], None]:
    """A worker that records, through a socket monitor on each of its tcp sockets, how the
    servers refused its handshake, and whether it was ever handed an item."""

    def run() -> None:
        from zmq.utils.monitor import recv_monitor_message

        real_connect = zmq.Socket.connect

        def watch(monitor: zmq.Socket[Any], endpoint: str) -> None:
            while True:
                event = recv_monitor_message(monitor)["event"]
                if event & REFUSED:
                    refused.put((worker_id, endpoint, int(event)))

        def monitored_connect(sock: zmq.Socket[Any], endpoint: str) -> Any:
            # The monitor must be there before the connection: a refused greeting is a
            # protocol error, after which libzmq does not try again.
            if endpoint.startswith("tcp://"):
                # A greeting that stalls would hold the connection for ZMQ_HANDSHAKE_IVL
                # (30 s by default) before it is tried again.
                sock.setsockopt(zmq.HANDSHAKE_IVL, 1000)
                monitor = sock.get_monitor_socket(REFUSED)
                threading.Thread(target=watch, args=(monitor, endpoint), daemon=True).start()
            return real_connect(sock, endpoint)

        zmq.Socket.connect = monitored_connect  # type: ignore[method-assign]

        class Rogue(worker_cls):  # type: ignore[misc,valid-type]
            def handle_execution(self, data: Any, *args: Any, **kwargs: Any) -> Any:
                got_work.set()
                return super().handle_execution(data, *args, **kwargs)

        run_as(Rogue, worker_id)()

    return run


@pytest.mark.parametrize("transport", ["tcp"])
@pytest.mark.timeout(90)
def test_workers_without_an_authorised_key_get_no_work(procs, endpoints, transport, keys):
    n = 100
    task = make_task(endpoints.worker, n, delay=0.002)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints)
    refused, got_work = FORK.Queue(), FORK.Event()
    procs.start("collector", with_env(keys.env("server"), lambda: collector().run()))
    procs.start(
        "distributor", with_env(keys.env("server"), lambda: run_distributor(endpoints, [task]))
    )
    # The rogues come first, so they would take the work if they could.
    procs.start("rogue-nokey", with_env(None, _rogue(worker, "rogue-nokey", refused, got_work)))
    procs.start(
        "rogue-wrongkey",
        with_env(keys.env("rogue"), _rogue(worker, "rogue-wrongkey", refused, got_work)),
    )
    # Every server refuses each rogue: a keyless one in the greeting (or by closing on
    # it), one with an unlisted key by ZAP, which says so.
    servers = (endpoints.worker, endpoints.collector)
    seen: dict[tuple[str, str], set[int]] = {}

    def all_refused() -> bool:
        return all(
            seen.get(("rogue-nokey", ep))
            and zmq.EVENT_HANDSHAKE_FAILED_AUTH in seen.get(("rogue-wrongkey", ep), set())
            for ep in servers
        )

    while not all_refused():
        try:
            rogue, endpoint, event = refused.get(timeout=20)
        except queue.Empty:
            pytest.fail(f"not every server refused every rogue within 20 s: seen {seen}")
        seen.setdefault((rogue, endpoint), set()).add(event)
    for ep in servers:
        assert seen[("rogue-nokey", ep)] <= NULL_REFUSED | {zmq.EVENT_DISCONNECTED}, seen
        assert seen[("rogue-wrongkey", ep)] <= {
            zmq.EVENT_HANDSHAKE_FAILED_AUTH,
            zmq.EVENT_DISCONNECTED,
        }, seen

    procs.start("good-1", with_env(keys.env("worker1"), run_as(worker, "good-1")))
    procs.start("good-2", with_env(keys.env("worker2"), run_as(worker, "good-2")))
    codes = exit_codes(procs, ["distributor", "collector", "good-1", "good-2"])
    assert codes == {"distributor": 0, "collector": 0, "good-1": 0, "good-2": 0}, codes
    for rogue in ("rogue-nokey", "rogue-wrongkey"):
        assert procs.started[rogue].exitcode is None, "a refused worker just keeps waiting"
        procs.kill(rogue)
    assert not got_work.is_set(), "a rogue worker was handed an item"
    report, results = load(endpoints.report), load(endpoints.results)
    check_exactly_once(results, n)
    assert report["collected"] == {"FIRST": n}
    assert set(report["per_worker"]) <= {"good-1", "good-2"}, report["per_worker"]
    assert sum(w["collected"] for w in report["workers"]) == n
    refused.close()
    refused.join_thread()


@pytest.mark.parametrize("transport", ["tcp"])
@pytest.mark.parametrize("secure", [False, True], ids=["plain", "curve"])
def test_captured_traffic_shows_no_plaintext(procs, endpoints, transport, keys, secure):
    """A relay between the worker and the distributor/collector records the bytes: the
    item's marker is there in a plain run (so the check can fail) and not in a secured one."""
    n = 20
    task = marker_task(endpoints.worker, n)
    collector = make_collector(endpoints)
    server_env = keys.env("server") if secure else None
    procs.start("collector", with_env(server_env, lambda: collector().run()))
    procs.start("distributor", with_env(server_env, lambda: run_distributor(endpoints, [task])))
    with (
        Relay(port_of(endpoints.worker)) as to_dist,
        Relay(port_of(endpoints.collector)) as to_coll,
    ):
        worker = make_worker(f"tcp://127.0.0.1:{to_dist.port}", f"tcp://127.0.0.1:{to_coll.port}")
        procs.start(
            "worker", with_env(keys.env("worker1") if secure else None, lambda: worker().run())
        )
        codes = procs.join(30)
    assert codes == {name: 0 for name in codes}, codes
    check_exactly_once(load(endpoints.results), n)
    captured = bytes(to_dist.captured + to_coll.captured)
    assert len(captured) > n * len(MARKER)
    if secure:
        assert MARKER.encode() not in captured
        assert b"CURVE" in captured  # the ZMTP greeting names the mechanism in clear
    else:
        assert captured.count(MARKER.encode()) >= 2 * n  # to the worker, then to the collector


# -- the local runner -------------------------------------------------------------------------


def test_run_secure_completes_over_tcp_with_fresh_keys(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=30)
    result = zmqpipeline("run", str(folder), "--workers", "2", "--secure", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"COLLECTED {list(range(1, 31))}" in result.stdout
    assert "OK: all 30 items collected" in result.stdout
    assert "CURVE" in result.stdout
    assert not list(folder.glob("*.ipc")), "--secure uses tcp, not ipc"


def test_service_answers_only_clients_with_an_authorised_key(procs, keys):
    service = pytest.importorskip("zmqpipeline.service")
    from service_helpers import make_service_worker

    from zmqpipeline import ServiceClient
    from zmqpipeline.errors import RequestTimeout

    front, back = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    worker = make_service_worker(back)
    procs.start("service", with_env(keys.env("server"), lambda: service.Service(front, back).run()))
    procs.start("worker", with_env(keys.env("worker1"), lambda: worker().run()))
    with ServiceClient(
        front, "UPPER", timeout=20, settings=Settings.from_env(security=keys.security("worker2"))
    ) as client:
        assert client.request({"text": "hello"})["text"] == "HELLO"
    for _name, settings in (
        ("no keys", Settings()),
        (
            "unlisted key",
            Settings(security=Security(keys.dir / "rogue.key_secret", keys.server_public)),
        ),
    ):
        with ServiceClient(front, "UPPER", timeout=1.0, retries=0, settings=settings) as rogue:
            with pytest.raises(RequestTimeout):
                rogue.request({"text": MARKER})
    procs.kill("service", signal.SIGTERM)
    codes = procs.join(20)
    assert codes == {"service": 0, "worker": 0}, codes


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


@pytest.mark.parametrize("transport", ["tcp"])
def test_items_pushed_over_curve_are_collected_and_a_stranger_cannot_push(
    procs, endpoints, transport, keys
):
    """A whole run over tcp with CURVE, fed from outside: a pusher with an authorised key
    pushes and closes the stream, every item is collected once; a key not authorised gets
    no answer, and pushes nothing."""

    class Pushed(zp.Task):
        task_type = zp.TaskType("FIRST")
        endpoint = zp.EndpointAddress(endpoints.worker)
        open_ended = True

    push = f"tcp://127.0.0.1:{free_port()}"
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints)
    bound = FORK.Event()

    def distributor() -> None:  # says when its push endpoint is bound
        import json
        from dataclasses import asdict

        from zmqpipeline.runtime import runtime

        real = runtime.RoleRuntime.open

        def open_and_announce(self: Any, socket_type: Any, endpoint: str, **kwargs: Any) -> Any:
            sock = real(self, socket_type, endpoint, **kwargs)
            if endpoint == push:
                bound.set()
            return sock

        runtime.RoleRuntime.open = open_and_announce  # type: ignore[method-assign]
        report = zp.Distributor(
            endpoints.collector, endpoints.ack, tasks=[Pushed], push_endpoint=push
        ).run()
        with open(endpoints.report, "w") as out:
            json.dump(asdict(report), out)

    procs.start("collector", with_env(keys.env("server"), lambda: collector().run()))
    procs.start("worker", with_env(keys.env("worker1"), run_as(worker, "worker")))
    procs.start("distributor", with_env(keys.env("server"), distributor))
    assert bound.wait(30), "the push endpoint was never bound"
    with pytest.raises(zp.PushError, match="does not admit our key"):
        zp.Pusher(push, keys.security("rogue"), timeout=1).push("FIRST", {"i": 999})
    pusher = zp.Pusher(push, keys.security("worker2"), timeout=10)
    assert pusher.push_many("FIRST", [{"i": i} for i in range(1, 51)]) == 50
    pusher.close("FIRST")
    codes = procs.join(30)
    assert codes == {name: 0 for name in codes}, codes
    results, report = load(endpoints.results), load(endpoints.report)
    check_exactly_once(results, 50)  # and not the stranger's 999
    assert report["tasks"]["FIRST"]["pushed"] == 50
