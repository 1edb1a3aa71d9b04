"""Service mode: the broker's decisions driven directly, without sockets."""

from __future__ import annotations

import pytest

from zmqpipeline import Settings, protocol
from zmqpipeline.errors import ProtocolError
from zmqpipeline.service.broker import BACKEND, FRONTEND, Broker

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
