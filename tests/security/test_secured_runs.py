"""Whole runs over tcp with CURVE, as real forked processes (each child gets its keys
through the documented ``ZMQPIPELINE_CURVE_*`` variables, set in the child only): every
item collected, rogue workers get no work, no plaintext on the wire, the local runner's
``--secure``, the service, and pushed items."""

from __future__ import annotations

import queue
import selectors
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
import zmq
import zmq.auth
from support.cli import write_pipeline, zmqpipeline
from support.curve import NULL_REFUSED, REFUSED, check_exactly_once, exit_codes, run_as, with_env
from support.pipelines import load, make_collector, make_task, make_worker, run_distributor
from support.procs import FORK, free_port

import zmqpipeline as zp
import zmqpipeline.runtime.runtime as runtime_module
from zmqpipeline.security import Security
from zmqpipeline.settings import Settings

pytestmark = pytest.mark.timeout(60)


MARKER = "plaintext-marker-3b9e61"


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
        # A socket has one monitor: the role's own (HandshakeWatch, which says why a
        # handshake fails) would take the events from this one, and did at times.
        runtime_module.RoleRuntime._watch = lambda *args: None  # type: ignore[method-assign]

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
    from support.service_helpers import make_service_worker

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
