"""Service mode under faults: garbage on both sockets, any start order and a restarted
service, signals to every role, dead endpoints and timeouts."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import msgpack
import pytest
import zmq
from support.procs import FORK, free_port
from support.service_helpers import (
    announcing_stop_signal,
    make_service_worker,
    run_client,
    run_service,
    stop_service,
    tcp_endpoints,
    wait_for_workers,
)

from zmqpipeline import ServiceClient, protocol
from zmqpipeline.errors import RequestTimeout


def _garbage(codec: protocol.Codec) -> list[list[bytes]]:
    pack = msgpack.packb
    request = bytes((protocol.VERSION, protocol.REQUEST))
    return [
        [b"x"],
        [],  # nothing after the routing id
        [b""],
        [request, b"\xc1"],  # not msgpack
        [bytes((protocol.VERSION - 1, protocol.REQUEST)), pack([1, "UPPER", {}])],  # old version
        [bytes((protocol.VERSION, 0xFF)), pack([])],  # unknown kind
        [request, pack([1, "UPPER", {}]), b"extra"],
        [request, pack({"not": "a list"})],
        [request, pack([1, 42, {}])],  # task type not a str
        codec.ready("UPPER", 1, 1),  # a batch kind
        codec.encode(protocol.SREADY, [5]),
        codec.reply(1, {}),  # the service's to a client
        codec.worker_reply(b"nobody", 1, {}, "UPPER"),
        codec.worker_error(b"nobody", 1, "x"),
        codec.job(b"client", 1, {}, "UPPER"),  # the service's to a worker
        codec.alive(),
        codec.heartbeat(b"ghost"),
        codec.disconnect(),
        [request, os.urandom(64)],
    ]


@pytest.mark.timeout(60)
def test_garbage_on_both_service_sockets_does_not_stop_it(procs, svc):
    worker = make_service_worker(svc.back)
    service = procs.start("service", lambda: run_service(svc.front, svc.back))
    procs.start("worker", lambda: worker().run())
    codec = protocol.Codec(1 << 20)
    ctx = zmq.Context()
    sockets = []
    try:
        for endpoint in (svc.front, svc.back):
            raw = ctx.socket(zmq.DEALER)
            raw.connect(endpoint)
            sockets.append(raw)
            for _ in range(3):
                for frames in _garbage(codec):
                    if frames:
                        raw.send_multipart(frames)
        with ServiceClient(svc.front, "UPPER", timeout=20) as client:
            for i in range(20):
                assert client.request({"text": f"ok {i}"})["text"] == f"OK {i}"
    finally:
        for raw in sockets:
            raw.close(linger=0)
        ctx.term()
    assert service.is_alive()
    stop_service(procs)


@pytest.mark.timeout(90)
def test_clients_and_workers_may_start_first_and_survive_a_service_restart(procs, tmp_path):
    svc = tcp_endpoints()  # a SIGKILLed service cannot remove its ipc files
    worker = make_service_worker(svc.back)
    out = tmp_path / "early.json"
    procs.start("worker", lambda: worker().run())
    early = procs.start("early client", lambda: run_client(svc.front, 0, 5, str(out)))
    procs.start("service", lambda: run_service(svc.front, svc.back))
    early.join(30)
    assert early.exitcode == 0 and json.loads(out.read_text())["ok"] == 5
    procs.kill("service", signal.SIGKILL)
    procs.started["service"].join(5)
    with ServiceClient(svc.front, "UPPER", timeout=20) as client:
        result = {}
        asking = threading.Thread(target=lambda: result.update(client.request({"text": "x"})))
        asking.start()  # asked while no service runs: delivered once one binds again
        procs.start("service again", lambda: run_service(svc.front, svc.back))
        asking.join(30)
        assert result.get("text") == "X"
        assert client.request({"text": "y"})["text"] == "Y"
    stop_service(procs, killed=("service",), name="service again")


@pytest.mark.timeout(60)
def test_sigterm_stops_the_service_and_its_workers(procs, svc):
    worker = make_service_worker(svc.back)
    procs.start("service", lambda: run_service(svc.front, svc.back))
    for k in range(2):
        procs.start(f"worker{k}", lambda: worker().run())
    wait_for_workers(svc.front, 2)
    stop_service(procs)  # every process exits with 0 within the join's 20 s


@pytest.mark.timeout(60)
def test_a_worker_stopped_by_signal_leaves_at_once(procs, svc, tmp_path):
    """The leaver says DISCONNECT: the service removes it then, not when a request sent to
    it fails or when it falls silent (its log says which)."""
    log = tmp_path / "service.log"
    worker = make_service_worker(svc.back)
    procs.start("service", lambda: run_service(svc.front, svc.back, log_path=str(log)))
    leaving = procs.start("leaving", lambda: worker().run())
    procs.start("staying", lambda: worker().run())
    wait_for_workers(svc.front, 2)
    procs.kill("leaving", signal.SIGINT)
    leaving.join(10)
    assert leaving.exitcode == 0
    staying = procs.started["staying"].pid
    with ServiceClient(svc.front, "UPPER", timeout=20, retries=0) as client:
        replies = client.request([{"text": str(i)} for i in range(6)])
        assert {r["pid"] for r in replies} == {staying}
    stop_service(procs)
    text = log.read_text()
    assert re.search(rf"worker \S+:{leaving.pid}:\S+ \(UPPER\) left", text), text
    assert "workers lost" not in text and "rerouted" not in text, text


@pytest.mark.timeout(30)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_worker_whose_service_is_unreachable_stops_on_a_signal(procs, tmp_path, signum):
    """Nobody binds the backend: the worker keeps reconnecting, and still ends on a signal."""
    worker = make_service_worker(f"ipc://{tmp_path}/nobody.ipc")
    listening, reconnected = FORK.Event(), FORK.Event()
    connect = worker._connect

    def counting_connect(self, rt, _n=[0]):  # noqa: B006 (a per-process counter)
        _n[0] += 1
        if _n[0] == 2:
            reconnected.set()
        return connect(self, rt)

    def target() -> None:
        announcing_stop_signal(listening)
        worker._connect = counting_connect  # type: ignore[method-assign]
        worker().run()

    process = procs.start("worker", target)
    assert listening.wait(10), "the worker never installed its signal handlers"
    assert reconnected.wait(10), "the worker never gave up on the silent service"
    procs.kill("worker", signum)
    process.join(15)
    assert process.exitcode == 0


@pytest.mark.timeout(30)
def test_a_client_waiting_on_a_dead_endpoint_ends_on_sigterm_like_any_process(procs):
    """SIGTERM ends the wait; the process's own (default) handler then ends the process."""
    listening = FORK.Event()
    endpoint = f"tcp://127.0.0.1:{free_port()}"

    def target() -> None:
        announcing_stop_signal(listening)
        ServiceClient(endpoint, "UPPER", timeout=600, retries=0).request({"text": "hello?"})

    process = procs.start("client", target)
    assert listening.wait(10), "the client never started waiting"
    procs.kill("client", signal.SIGTERM)
    process.join(15)
    assert process.exitcode == -signal.SIGTERM


@pytest.mark.timeout(30)
def test_a_request_to_a_dead_tcp_endpoint_times_out():
    with ServiceClient(f"tcp://127.0.0.1:{free_port()}", "UPPER", timeout=0.3) as client:
        with pytest.raises(RequestTimeout, match=r"no reply .* after 1 attempt"):
            client.request({"text": "anyone?"}, retries=0)
        with pytest.raises(RequestTimeout, match=r"2 of 2 replies missing"):
            client.request([{"n": 1}, {"n": 2}], retries=0)


@pytest.mark.timeout(30)
def test_a_client_with_no_service_times_out_clearly(svc):
    with ServiceClient(svc.front, "UPPER", timeout=0.2, retries=2) as client:
        started = time.monotonic()
        with pytest.raises(RequestTimeout, match=r"after 3 attempt\(s\) of 0.2 s"):
            client.request({"text": "anyone?"})
        assert time.monotonic() - started >= 0.6, "each attempt waited its timeout"
        with pytest.raises(TypeError, match="cannot serialize"):
            client.request({"bad": object()})
