"""A rogue service worker learns a client's routing id from the one request routed to it,
then answers that client's next request ids (they count up) before the real worker does.
A reply must come from a worker its request was routed to: no forged reply reaches the
client. Real processes over real sockets."""

from __future__ import annotations

import json
import logging
import signal
import time

import pytest
import zmq
from support.hostile import logging_to, read_text, wait_for_log
from support.service_helpers import make_service_worker

from zmqpipeline import Service, ServiceClient, protocol

pytestmark = pytest.mark.timeout(120)

N = 200
MIB = 1024 * 1024


def _rogue(backend: str) -> None:
    """Join for UPPER; answer the first JOB like a real worker, leave UPPER (re-announce
    as OTHER: nothing more is routed to it) and answer the client's next ids, forged."""
    codec = protocol.Codec(64 * MIB)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, b"rogue")
    sock.connect(backend)
    sock.send_multipart(codec.sready("UPPER"))
    while True:
        msg = protocol.decode(sock.recv_multipart())
        if type(msg) is protocol.Job:
            break
    data = msg.data
    reply = {"text": str(data.get("text", "")).upper(), "client": 0, "n": data.get("n")}
    sock.send_multipart(codec.worker_reply(msg.client, msg.request_id, reply, "UPPER"))
    sock.send_multipart(codec.sready("OTHER"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # bounded in time: killed by the test before
        for request_id in range(msg.request_id + 1, msg.request_id + N + 2):
            forged = {"text": "FORGED", "client": 0, "n": -1}
            sock.send_multipart(codec.worker_reply(msg.client, request_id, forged, "UPPER"))
        time.sleep(0.002)  # pacing the forgeries


def _client(front: str, out: str) -> None:
    forged = 0
    with ServiceClient(front, "UPPER", timeout=20) as client:
        for i in range(N):
            request = {"text": f"request {i}", "client": 0, "n": i, "sleep": 0.01}
            reply = client.request(request)
            if reply.get("text") != f"REQUEST {i}":
                forged += 1
    with open(out, "w") as output:
        json.dump({"forged": forged}, output)


def test_a_rogue_service_workers_replies_never_reach_a_client(procs, tmp_path):
    front, back = f"ipc://{tmp_path}/front.ipc", f"ipc://{tmp_path}/back.ipc"
    log, out = tmp_path / "service.log", str(tmp_path / "client.json")
    service = logging_to(log, lambda: Service(front, back).run(), logging.INFO)
    procs.start("service", service)
    procs.start("rogue", lambda: _rogue(back))
    # The rogue joins first and takes the client's first request; then the real worker.
    assert wait_for_log(log, ["worker rogue joined"], 30), read_text(log)
    worker = make_service_worker(back)
    procs.start("client", lambda: _client(front, out))
    assert wait_for_log(log, ["re-announced as 'OTHER'"], 30), read_text(log)
    procs.start("serviceworker", lambda: worker().run())
    procs.started["client"].join(90)
    assert procs.started["client"].exitcode == 0
    with open(out) as source:
        assert json.load(source) == {"forged": 0}
    assert read_text(log).count("dropped a reply from worker") == 1, read_text(log)
    procs.kill("rogue")
    for name in ("serviceworker", "service"):
        procs.kill(name, signal.SIGTERM)
        procs.started[name].join(20)
