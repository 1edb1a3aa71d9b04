"""Nested-list bombs: 16 MB bodies of small lists, each within msgpack's per-container
limits, decode to about 70 times their size. Sent by a stranger to every endpoint that
decodes user data — the distributor's push, metadata and task endpoints, the collector's
results and ACK endpoints, a service's frontend and backend — they must be refused before
they are built: every role (the workers a pushed item would reach included) stays under
100 MiB. Real processes over real sockets; peaks read from /proc/PID/status (VmHWM)."""

from __future__ import annotations

import signal
from typing import Any

import pytest
import zmq
from support.hostile import HwmWatch, logging_to, nested_bomb, read_text, wait_for_log
from support.pipelines import make_collector, make_task, make_worker
from support.service_helpers import make_service_worker

from zmqpipeline import Distributor, EndpointAddress, Service, Task, TaskType, protocol

pytestmark = pytest.mark.timeout(120)

LIMIT_MIB = 100
REFUSED = "too many elements"


def _send(endpoint: str, messages: list[list[bytes]], router_peer: bool = True) -> None:
    """Connect to ``endpoint`` (DEALER, or PUSH for a PULL) and send every message."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER if router_peer else zmq.PUSH)
    sock.connect(endpoint)
    for frames in messages:
        sock.send_multipart(frames)
    sock.close(linger=30_000)
    ctx.term()


def _frames(kind: int, fields: list[Any]) -> list[bytes]:
    return [bytes((protocol.VERSION, kind)), nested_bomb(fields)]


def _stop(procs: Any, names: list[str]) -> None:
    for name in names:
        procs.kill(name, signal.SIGTERM)
    for name in names:
        procs.started[name].join(20)
        assert procs.started[name].exitcode is not None, f"{name} did not stop"


def _open_task(endpoint: str) -> type[Task]:
    class Open(Task):
        open_ended = True

    Open.task_type = TaskType("FIRST")
    Open.endpoint = EndpointAddress(endpoint)
    return Open


def test_bombs_to_the_pipeline_endpoints_are_refused_unbuilt(procs, endpoints, tmp_path):
    push_ep, meta_log = f"ipc://{tmp_path}/push.ipc", tmp_path / "distributor.log"
    collector_log = tmp_path / "collector.log"
    open_task = _open_task(endpoints.worker)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints)
    watch = HwmWatch(procs)
    procs.start("collector", logging_to(collector_log, lambda: collector().run()))
    procs.start("worker", lambda: worker().run())

    def distributor() -> None:
        Distributor(
            endpoints.collector, endpoints.ack, tasks=[open_task], push_endpoint=push_ep
        ).run()

    procs.start("distributor", logging_to(meta_log, distributor))
    attacks = {
        "push": (push_ep, [_frames(protocol.PUSH, [1, "FIRST"])], True),
        "task": (endpoints.worker, [_frames(protocol.READY, [])], True),
        "results": (endpoints.collector, [_frames(protocol.RESULT, [1, "FIRST", b"w"])], False),
        "ack": (endpoints.ack, [_frames(protocol.START, [1])], True),
    }
    for name, (endpoint, messages, router_peer) in attacks.items():
        procs.start(
            f"attacker-{name}", lambda e=endpoint, m=messages, r=router_peer: _send(e, m, r)
        )
    for name in attacks:
        procs.started[f"attacker-{name}"].join(60)
    refused = wait_for_log(meta_log, [REFUSED], 30) and wait_for_log(collector_log, [REFUSED], 30)
    _stop(procs, ["distributor", "worker", "collector"])
    peak = watch.stop()
    assert set(peak) == {"distributor", "worker", "collector"}
    assert max(peak.values()) < LIMIT_MIB, peak
    assert refused, read_text(meta_log) + read_text(collector_log)


def test_a_bomb_for_the_metadata_endpoint_is_refused_unbuilt(procs, endpoints, tmp_path):
    log = tmp_path / "distributor.log"
    task = make_task(endpoints.worker, 10)
    watch = HwmWatch(procs)

    def distributor() -> None:
        Distributor(
            endpoints.collector,
            endpoints.ack,
            tasks=[task],
            receive_metadata=True,
            metadata_endpoint=endpoints.meta,
        ).run()

    procs.start("distributor", logging_to(log, distributor))
    procs.start("attacker", lambda: _send(endpoints.meta, [_frames(protocol.META, [])]))
    procs.started["attacker"].join(60)
    refused = wait_for_log(log, [REFUSED], 30)
    _stop(procs, ["distributor"])
    peak = watch.stop()
    assert peak["distributor"] < LIMIT_MIB, peak
    assert refused, read_text(log)


def test_bombs_to_a_service_are_refused_unbuilt(procs, tmp_path):
    front, back = f"ipc://{tmp_path}/front.ipc", f"ipc://{tmp_path}/back.ipc"
    log = tmp_path / "service.log"
    worker = make_service_worker(back)
    watch = HwmWatch(procs)
    procs.start("service", logging_to(log, lambda: Service(front, back).run()))
    procs.start("serviceworker", lambda: worker().run())
    procs.start("attacker-front", lambda: _send(front, [_frames(protocol.REQUEST, [1, "UPPER"])]))
    reply = [b"client", 1]
    procs.start("attacker-back", lambda: _send(back, [_frames(protocol.WORKER_REPLY, reply)]))
    for name in ("attacker-front", "attacker-back"):
        procs.started[name].join(60)
    refused = wait_for_log(log, [REFUSED], 30)
    _stop(procs, ["service", "serviceworker"])
    peak = watch.stop()
    assert max(peak.values()) < LIMIT_MIB, peak
    assert refused, read_text(log)


PART = b"p" * (60 * 1024)
PARTS = 1500  # one message of 88 MiB, all of it held by libzmq before the service reads it


@pytest.mark.parametrize("side", ["frontend", "backend"])
def test_a_service_keeps_no_copy_of_a_message_of_many_parts(procs, tmp_path, side):
    # libzmq builds the whole message before the service sees a part (docs/security.md):
    # that much cannot be refused. The service reads it to its end without keeping the
    # parts (copied all of them first, twice the message in all).
    front, back = f"ipc://{tmp_path}/front.ipc", f"ipc://{tmp_path}/back.ipc"
    log = tmp_path / "service.log"
    watch = HwmWatch(procs)
    procs.start("service", logging_to(log, lambda: Service(front, back).run()))
    target = front if side == "frontend" else back
    procs.start("attacker", lambda: _send(target, [[PART] * PARTS]))
    procs.started["attacker"].join(60)
    refused = wait_for_log(log, [f"frame count: message of more than 3 frames at the {side}"], 30)
    _stop(procs, ["service"])
    peak = watch.stop()["service"]
    message_mib = PARTS * len(PART) / 2**20
    assert peak < 1.5 * message_mib, f"service peaked at {peak:.0f} MiB for {message_mib:.0f}"
    assert refused, read_text(log)
