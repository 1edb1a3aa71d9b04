"""Service mode with real processes: many clients, list fan-out, a worker killed holding a
request, a long request, a raising worker, unknown task types."""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time

import pytest
import zmq
from support.procs import FORK
from support.service_helpers import (
    make_service_worker,
    run_client,
    run_service,
    stop_service,
    wait_for_workers,
)

from zmqpipeline import ServiceClient, ServiceError, protocol
from zmqpipeline.errors import RequestFailed


@pytest.mark.timeout(120)
def test_ten_clients_get_every_reply_right_over_three_workers(procs, svc, tmp_path):
    worker = make_service_worker(svc.back)
    procs.start("service", lambda: run_service(svc.front, svc.back))
    for k in range(3):
        procs.start(f"worker{k}", lambda: worker().run())
    pids = wait_for_workers(svc.front, 3)
    outs = [tmp_path / f"client{c}.json" for c in range(10)]
    clients = [
        procs.start(f"client{c}", lambda c=c: run_client(svc.front, c, 100, str(outs[c])))
        for c in range(10)
    ]
    for client in clients:
        client.join(60)
    assert [client.exitcode for client in clients] == [0] * 10
    served: dict[int, int] = {}
    for out in outs:
        result = json.loads(out.read_text())
        assert result["ok"] == 100
        for pid, n in result["served"].items():
            served[int(pid)] = served.get(int(pid), 0) + n
    assert sum(served.values()) == 1000
    assert set(served) == pids, "every worker took a share"
    stop_service(procs)


@pytest.mark.timeout(60)
def test_a_list_fans_out_over_the_workers_and_comes_back_in_order(procs, svc):
    worker = make_service_worker(svc.back)
    procs.start("service", lambda: run_service(svc.front, svc.back))
    for k in range(3):
        procs.start(f"worker{k}", lambda: worker().run())
    wait_for_workers(svc.front, 3)
    # later elements finish first: order comes from the ids, not from arrival
    items = [{"text": f"item {i}", "n": i, "sleep": 0.05 * ((11 - i) % 4)} for i in range(12)]
    with ServiceClient(svc.front, "UPPER", timeout=20) as client:
        replies = client.request(items)
        assert client.request([]) == []
    assert [r["text"] for r in replies] == [f"ITEM {i}" for i in range(12)]
    assert [r["n"] for r in replies] == list(range(12))
    assert len({r["pid"] for r in replies}) == 3
    # served in parallel: some two calls of handle_message (each stamps its start and end
    # on the shared monotonic clock) overlapped
    spans = sorted((r["started"], r["ended"]) for r in replies)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))
    stop_service(procs)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_a_worker_lost_holding_a_request_loses_no_request(procs, svc, how):
    """SIGKILL drops the worker's connection; SIGSTOP keeps it open but silences the
    heartbeats (a hung host): either way another worker answers the request."""
    holder, held = FORK.Value("i", 0), FORK.Event()
    worker = make_service_worker(svc.back, holder=holder, held=held)
    procs.start("service", lambda: run_service(svc.front, svc.back))
    procs.start("worker0", lambda: worker().run())
    procs.start("worker1", lambda: worker().run())
    wait_for_workers(svc.front, 2)
    lost = {}

    def stop_the_holder() -> None:
        if held.wait(20):
            lost["pid"] = holder.value
            lost["at"] = time.monotonic()
            os.kill(holder.value, getattr(signal, how))

    stopper = threading.Thread(target=stop_the_holder)
    stopper.start()
    try:
        with ServiceClient(svc.front, "UPPER", timeout=20, retries=0) as client:
            reply = client.request({"text": "precious", "action": "hold"})
            answered = time.monotonic()
    finally:
        stopper.join()
    assert reply["text"] == "PRECIOUS"
    assert reply["pid"] != lost["pid"]
    if how == "SIGSTOP":
        assert answered - lost["at"] >= 0.8, "a stopped worker is only found out by silence"
        os.kill(lost["pid"], signal.SIGKILL)
    victim_name = next(n for n, p in procs.started.items() if p.pid == lost["pid"])
    procs.started[victim_name].join(5)
    assert procs.started[victim_name].exitcode == -signal.SIGKILL
    with ServiceClient(svc.front, "UPPER", timeout=20) as client:
        assert client.request({"text": "after"})["pid"] != lost["pid"]
    stop_service(procs, killed=(victim_name,))


@pytest.mark.timeout(60)
def test_a_long_request_is_not_mistaken_for_a_dead_worker(procs, svc):
    """handle_message runs 2.5x the liveness (1 s here): the heartbeat thread keeps its
    worker alive, so the request runs once, not again on the other worker."""
    calls = FORK.Value("i", 0)
    worker = make_service_worker(svc.back, calls=calls)
    procs.start("service", lambda: run_service(svc.front, svc.back))
    procs.start("worker0", lambda: worker().run())
    procs.start("worker1", lambda: worker().run())
    wait_for_workers(svc.front, 2)
    calls.value = 0
    with ServiceClient(svc.front, "UPPER", timeout=20, retries=0) as client:
        assert client.request({"text": "slow", "sleep": 2.5})["text"] == "SLOW"
    assert calls.value == 1  # a re-routed copy would have started by ~1.4 s
    stop_service(procs)


@pytest.mark.timeout(60)
def test_a_raising_worker_sends_an_error_the_client_raises_and_carries_on(procs, svc):
    worker = make_service_worker(svc.back)
    procs.start("service", lambda: run_service(svc.front, svc.back))
    alive = procs.start("worker", lambda: worker().run())
    with ServiceClient(svc.front, "UPPER", timeout=20) as client:
        with pytest.raises(RequestFailed) as failure:
            client.request({"action": "raise", "n": 7})
        assert "ValueError: boom 7" in str(failure.value)
        assert "Traceback" in failure.value.error
        assert isinstance(failure.value, ServiceError)
        reply = client.request({"text": "still here"})
        assert reply["text"] == "STILL HERE" and reply["pid"] == alive.pid
        with pytest.raises(RequestFailed) as failure:
            client.request([{"text": "fine"}, {"action": "raise", "n": 1}, {"text": "fine"}])
        assert failure.value.index == 1 and "element 1 of 3" in str(failure.value)
        with pytest.raises(
            RequestFailed, match=r"cannot send its reply:.*at \['value'\] \(object\)"
        ):
            client.request({"action": "unserializable"})
        assert client.request({"text": "again"})["text"] == "AGAIN"
    assert alive.is_alive()
    stop_service(procs)


@pytest.mark.timeout(60)
def test_unknown_or_bad_task_types_get_an_error_reply(procs, svc):
    procs.start("service", lambda: run_service(svc.front, svc.back, worker_wait_s=0.5))
    with ServiceClient(svc.front, timeout=20) as client:
        started = time.monotonic()
        with pytest.raises(RequestFailed, match="no worker for task type 'NOPE'"):
            client.request({"x": 1}, task_type="NOPE")
        assert time.monotonic() - started >= 0.5
        with pytest.raises(ValueError, match="no task type"):
            client.request({"x": 1})
        with pytest.raises(TypeError):
            client.request({"x": 1}, task_type=5)  # type: ignore[arg-type]
    # what the ServiceClient refuses locally, a foreign client may send: refused at once
    codec = protocol.Codec(1 << 20)
    ctx = zmq.Context()
    raw = ctx.socket(zmq.DEALER)
    try:
        raw.connect(svc.front)
        # a non-str task type is a malformed REQUEST: dropped without a reply, so the
        # first reply to come is the refusal of the empty task type sent after it
        raw.send_multipart(codec.encode(protocol.REQUEST, [1, 42, {}]))
        raw.send_multipart(codec.encode(protocol.REQUEST, [2, "", {}]))
        assert raw.poll(10_000)
        msg = protocol.decode(raw.recv_multipart())
        assert isinstance(msg, protocol.RequestError) and msg.request_id == 2
        assert "non-empty str" in msg.error
    finally:
        raw.close(linger=0)
        ctx.term()
    stop_service(procs)
