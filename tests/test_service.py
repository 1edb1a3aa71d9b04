"""Service mode: the broker's decisions driven directly, then real processes — many clients,
list fan-out, a worker killed holding a request, a raising worker, unknown task types,
garbage on both service sockets, start order, a restarted service, signals, the CLI."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import msgpack
import pytest
import zmq
from conftest import FORK, free_port
from service_helpers import (
    announcing_stop_signal,
    make_service_worker,
    run_client,
    run_service,
    wait_for_workers,
)

from zmqpipeline import ServiceClient, ServiceError, Settings, protocol
from zmqpipeline.errors import ProtocolError, RequestFailed, RequestTimeout
from zmqpipeline.service.broker import BACKEND, FRONTEND, Broker

ROOT = Path(__file__).resolve().parent.parent


# -- the broker, without sockets ------------------------------------------------------------

P = protocol


def _broker(**overrides) -> Broker:
    settings = Settings(heartbeat_interval_s=0.5, liveness_misses=4, **overrides)
    return Broker(settings, worker_wait_s=5.0)


def _sent(broker: Broker) -> list[tuple[int, bytes, object]]:
    """(channel, routing id, decoded record) of everything the broker sent; clears it."""
    out = [(ch, ident, P.decode(frames)) for ch, ident, frames in broker.outbox]
    broker.outbox.clear()
    return out


def _to_workers(broker: Broker) -> list[tuple[bytes, int]]:
    """(worker, request id) of every JOB sent."""
    return [
        (ident, msg.request_id)
        for ch, ident, msg in _sent(broker)
        if ch == BACKEND and isinstance(msg, P.Job)
    ]


def _request(broker: Broker, client: bytes, rid: int, task_type="UPPER", now=0.0, data=None):
    broker.on_request(client, P.Request(rid, task_type, {} if data is None else data), now)


def _ready(broker: Broker, *wids: bytes, task_type: str = "UPPER", now: float = 0.0) -> None:
    for wid in wids:
        broker.on_worker(wid, P.SReady(task_type), now)


def _reply(broker: Broker, wid: bytes, client: bytes, rid: int, now: float = 0.0) -> None:
    broker.on_worker(wid, P.WorkerReply(client, rid, {"from": wid.decode()}), now)


def test_requests_go_to_the_least_recently_used_free_worker():
    broker = _broker()
    _ready(broker, b"a", b"b", b"c")
    for rid in (1, 2, 3):
        _request(broker, b"cl", rid)
    assert _to_workers(broker) == [(b"a", 1), (b"b", 2), (b"c", 3)]
    _reply(broker, b"b", b"cl", 2)
    _reply(broker, b"a", b"cl", 1)
    replies = [(ident, msg) for ch, ident, msg in _sent(broker) if ch == FRONTEND]
    assert replies == [(b"cl", P.Reply(2, {"from": "b"})), (b"cl", P.Reply(1, {"from": "a"}))]
    for rid in (4, 5, 6):  # 6 waits: every worker is busy
        _request(broker, b"cl", rid)
    assert _to_workers(broker) == [(b"b", 4), (b"a", 5)]
    _reply(broker, b"c", b"cl", 3)
    assert _to_workers(broker) == [(b"c", 6)]


def test_a_job_carries_the_client_id_and_data():
    broker = _broker()
    _ready(broker, b"w")
    _request(broker, b"cl", 9, data={"x": [1, 2]})
    assert _sent(broker) == [(BACKEND, b"w", P.Job(b"cl", 9, {"x": [1, 2]}))]


def test_a_request_waits_for_a_worker_of_its_type_then_is_refused_naming_it():
    broker = _broker()
    _request(broker, b"cl", 1, data={"x": 1})
    _request(broker, b"cl", 2, task_type="NOPE")
    assert _sent(broker) == []
    _ready(broker, b"w", now=1.0)  # joins in time: gets the waiting request
    assert _to_workers(broker) == [(b"w", 1)]
    broker.tick(4.9)
    assert [m for m in _sent(broker) if m[0] == FRONTEND] == []
    broker.on_worker(b"w", P.Heartbeat(b"w"), 4.9)
    broker.tick(5.0)
    refused = [(ident, msg) for ch, ident, msg in _sent(broker) if ch == FRONTEND]
    assert len(refused) == 1
    ident, msg = refused[0]
    assert isinstance(msg, P.RequestError)
    assert (ident, msg.request_id) == (b"cl", 2)
    assert "'NOPE'" in msg.error and "5 s" in msg.error
    assert not broker.requests.get((b"cl", 2))


def test_an_empty_task_type_is_refused_at_once():
    broker = _broker()
    _request(broker, b"cl", 1, task_type="")
    [(channel, ident, msg)] = _sent(broker)
    assert (channel, ident, type(msg), msg.request_id) == (FRONTEND, b"cl", P.RequestError, 1)
    assert "non-empty str" in msg.error
    assert broker.requests == {}


def test_a_repeated_request_id_does_not_start_a_second_copy():
    broker = _broker()
    _ready(broker, b"a", b"b")
    _request(broker, b"cl", 1)
    _request(broker, b"cl", 1, now=0.5)  # the client's retry
    _request(broker, b"other", 1, now=0.5)  # same id, another client: its own
    assert _to_workers(broker) == [(b"a", 1), (b"b", 1)]
    assert broker.stats["duplicates"] == 1


def test_a_silent_worker_is_removed_and_its_request_rerouted():
    broker = _broker()
    _ready(broker, b"dead", b"alive")
    _request(broker, b"cl", 1)
    assert _to_workers(broker) == [(b"dead", 1)]
    for t in (0.5, 1.0, 1.5, 1.9):
        broker.on_worker(b"beat-socket", P.Heartbeat(b"alive"), t)
        broker.tick(t)
    assert b"dead" in broker.workers
    _sent(broker)
    broker.tick(2.0)  # liveness 0.5 s x 4
    assert b"dead" not in broker.workers
    assert _to_workers(broker) == [(b"alive", 1)]
    assert broker.stats["rerouted"] == 1


def test_the_service_sends_alive_to_every_known_worker_each_tick():
    broker = _broker()
    _ready(broker, b"a", b"b")
    broker.tick(0.5)
    assert _sent(broker) == [(BACKEND, b"a", P.Alive()), (BACKEND, b"b", P.Alive())]


def test_workers_that_fall_silent_together_get_no_rerouted_request():
    broker = _broker()
    _ready(broker, b"busy", b"idle")
    _request(broker, b"cl", 1)
    assert _to_workers(broker) == [(b"busy", 1)]
    broker.tick(2.0)  # both silent
    assert broker.workers == {}
    assert _to_workers(broker) == []
    assert broker.requests[(b"cl", 1)].attempts == 1  # waits for a live worker
    _ready(broker, b"new", now=2.5)
    assert _to_workers(broker) == [(b"new", 1)]


def test_a_request_that_loses_every_worker_is_refused_after_max_attempts():
    broker = _broker(max_attempts=2)
    _request(broker, b"cl", 1)
    for k, wid in enumerate((b"w1", b"w2")):
        _ready(broker, wid, now=float(k))
        assert _to_workers(broker) == [(wid, 1)]
        broker.worker_unreachable(wid, float(k))
    refused = [msg for _, _, msg in _sent(broker) if isinstance(msg, P.RequestError)]
    assert len(refused) == 1 and "handed to 2 workers" in refused[0].error
    assert broker.requests == {}


def test_the_first_reply_wins_and_a_late_one_frees_its_worker():
    broker = _broker()
    _ready(broker, b"slow")
    _request(broker, b"cl", 1)
    broker.tick(2.0)  # "slow" said nothing for 2 s: counted dead
    _ready(broker, b"new", now=2.0)
    assert _to_workers(broker) == [(b"slow", 1), (b"new", 1)]
    _reply(broker, b"slow", b"cl", 1, now=2.1)  # it was only slow: its answer counts
    sent = _sent(broker)
    assert (FRONTEND, b"cl", P.Reply(1, {"from": "slow"})) in sent
    assert (BACKEND, b"slow", P.Reset()) in sent  # announce yourself again
    assert broker.requests == {}
    _reply(broker, b"new", b"cl", 1, now=2.2)  # forwarded too: the client drops it
    assert broker.idle["UPPER"] == {b"new": None}


def test_ready_from_a_busy_worker_requeues_what_it_was_sent():
    broker = _broker()
    _ready(broker, b"w")
    _request(broker, b"cl", 1)
    assert _to_workers(broker) == [(b"w", 1)]
    _ready(broker, b"w", now=0.1)  # it never got the request
    assert _to_workers(broker) == [(b"w", 1)]
    assert broker.requests[(b"cl", 1)].attempts == 2


def test_unknown_workers_are_asked_to_announce_themselves_at_most_once_per_interval():
    broker = _broker()
    for t in (0.0, 0.1, 0.2, 0.6):
        broker.on_worker(b"beat", P.Heartbeat(b"ghost"), t)
    assert _sent(broker) == [(BACKEND, b"ghost", P.Reset()), (BACKEND, b"ghost", P.Reset())]


def test_worker_errors_are_forwarded_and_the_worker_is_free_again():
    broker = _broker()
    _ready(broker, b"w")
    _request(broker, b"cl", 1)
    _request(broker, b"cl", 2)
    _sent(broker)
    broker.on_worker(b"w", P.WorkerError(b"cl", 1, "worker w raised X: y"), 0.1)
    sent = _sent(broker)
    assert (FRONTEND, b"cl", P.RequestError(1, "worker w raised X: y")) in sent
    assert (BACKEND, b"w", P.Job(b"cl", 2, {})) in sent


def test_a_worker_that_leaves_is_removed_at_once():
    broker = _broker()
    _ready(broker, b"w")
    broker.on_worker(b"w", P.Disconnect(), 0.1)
    assert broker.workers == {} and "UPPER" not in broker.idle


def test_pending_requests_are_bounded():
    broker = _broker(max_in_flight=2)
    for rid in (1, 2, 3):
        _request(broker, b"cl", rid)
    [(_, _, msg)] = _sent(broker)
    assert isinstance(msg, P.RequestError) and msg.request_id == 3 and "busy" in msg.error


def test_records_of_the_wrong_direction_are_protocol_errors():
    broker = _broker()
    with pytest.raises(ProtocolError, match="JOB is not sent by clients"):
        broker.on_request(b"cl", P.Job(b"client", 1, {}), 0.0)  # type: ignore[arg-type]
    for msg in (
        P.Request(1, "UPPER", {}),
        P.Reply(1, {}),
        P.RequestError(1, "x"),
        P.Ready("UPPER", 1, 1, 1),
        P.Alive(),
    ):
        with pytest.raises(ProtocolError, match="is not sent by service workers"):
            broker.on_worker(b"w", msg, 0.0)
    assert broker.workers == {} and broker.outbox == []


# -- real processes -------------------------------------------------------------------------


@pytest.fixture
def svc(tmp_path: Path) -> SimpleNamespace:
    """Service endpoints: ipc files in the test's tmp_path."""
    return SimpleNamespace(front=f"ipc://{tmp_path}/front.ipc", back=f"ipc://{tmp_path}/back.ipc")


def _tcp() -> SimpleNamespace:
    return SimpleNamespace(
        front=f"tcp://127.0.0.1:{free_port()}", back=f"tcp://127.0.0.1:{free_port()}"
    )


def _stop_service(procs, *, killed: tuple[str, ...] = (), name: str = "service") -> None:
    """SIGTERM the service; it tells its workers to stop: every process exits with 0."""
    procs.kill(name, signal.SIGTERM)
    codes = procs.join(20)
    expected = {n: (-signal.SIGKILL if n in killed else 0) for n in codes}
    assert codes == expected


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
    _stop_service(procs)


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
    _stop_service(procs)


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
    _stop_service(procs, killed=(victim_name,))


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
    _stop_service(procs)


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
    _stop_service(procs)


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
    _stop_service(procs)


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
    _stop_service(procs)


@pytest.mark.timeout(90)
def test_clients_and_workers_may_start_first_and_survive_a_service_restart(procs, tmp_path):
    svc = _tcp()  # a SIGKILLed service cannot remove its ipc files
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
    _stop_service(procs, killed=("service",), name="service again")


@pytest.mark.timeout(60)
def test_sigterm_stops_the_service_and_its_workers(procs, svc):
    worker = make_service_worker(svc.back)
    procs.start("service", lambda: run_service(svc.front, svc.back))
    for k in range(2):
        procs.start(f"worker{k}", lambda: worker().run())
    wait_for_workers(svc.front, 2)
    _stop_service(procs)  # every process exits with 0 within the join's 20 s


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
    _stop_service(procs)
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


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "zmqpipeline", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.mark.timeout(90)
def test_cli_request_prints_the_reply_and_rejects_bad_input(procs, svc, tmp_path):
    module = tmp_path / "cli_workers.py"
    module.write_text(
        "import os, zmqpipeline\n"
        "zmqpipeline.TaskType.register_type('UPPER')\n"
        f"FRONTEND_ENDPOINT = {svc.front!r}\n"
        f"BACKEND_ENDPOINT = {svc.back!r}\n"
        "class Upper(zmqpipeline.ServiceWorker):\n"
        "    task_type = 'UPPER'\n"
        f"    endpoint = {svc.back!r}\n"
        "    def handle_message(self, data, task_type, msgtype):\n"
        "        return {'message': data['message'].upper()}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "zmqpipeline"]
    service = subprocess.Popen(
        [*cmd, "service", str(module)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    worker = subprocess.Popen(
        [*cmd, "serviceworker", f"{module}:Upper"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        done = _cli("request", svc.front, "UPPER", '{"message": "hello"}')
        assert (done.returncode, json.loads(done.stdout)) == (0, {"message": "HELLO"})
        done = _cli("request", svc.front, "UPPER", '[{"message": "a"}, {"message": "b"}]')
        assert json.loads(done.stdout) == [{"message": "A"}, {"message": "B"}]
        done = _cli("request", svc.front, "UPPER", '{"other": 1}')
        assert done.returncode == 1 and "KeyError" in done.stderr
        for bad in (
            ("request", svc.front, "UPPER", "{not json"),
            ("request", "tcp:/nowhere", "UPPER", "{}"),
            ("request", svc.front, "", "{}"),
            ("serviceworker", f"{module}:Missing"),
            ("serviceworker", "no_such_module_here:Upper"),
            ("service",),
        ):
            done = _cli(*bad)
            assert done.returncode == 2, (bad, done.stderr)
            assert len(done.stderr.strip().splitlines()) == 1, (bad, done.stderr)
            assert "Traceback" not in done.stderr
        service.send_signal(signal.SIGINT)
        assert service.wait(15) == 0
        assert worker.wait(15) == 0  # told to stop by the service
    finally:
        for process in (service, worker):
            if process.poll() is None:
                process.kill()
            process.wait(5)
            assert process.returncode is not None
