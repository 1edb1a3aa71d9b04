"""What arrives at the distributor's request sockets: garbage on the control and push
endpoints is dropped and counted, and a well-formed request that follows is answered."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import zmq
from support.control import (
    lone_distributor,
    wait_for,
)
from support.scheduling import SETTINGS, make
from support.stages import open_class

from zmqpipeline import (
    Control,
    protocol,
)
from zmqpipeline.distributor.push import PushLogic
from zmqpipeline.runtime import runtime

pytestmark = pytest.mark.timeout(60)


@contextmanager
def _stranger(endpoint: str) -> Iterator[zmq.Socket]:
    """A DEALER of nobody's, connected to ``endpoint``; closed at the end."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.connect(endpoint)
        yield sock
    finally:
        sock.close(0)
        ctx.term()


def _waiting_distributor(procs, ep) -> Control:
    """A lone distributor (see support.control), answering its control endpoint."""
    lone_distributor(procs, ep)
    control = Control(ep.control)
    wait_for(control, lambda s: True)
    return control


def test_garbage_on_the_control_socket_is_dropped_and_counted(procs, ep):
    control = _waiting_distributor(procs, ep)
    with _stranger(ep.control) as sock:
        codec = protocol.Codec(1 << 20)
        sock.send_multipart([b"junk"])
        sock.send_multipart([bytes((protocol.VERSION, 0x30)), b"\xc1"])  # CONTROL, undecodable
        sock.send_multipart(codec.ready("FIRST", 1, 1))  # a kind not taken here
        sock.send_multipart([b"a", b"b", b"c", b"d"])
        sock.send_multipart(codec.control(7, "status", {}))  # then a good one: answered
        assert sock.poll(5000)
        reply = protocol.decode(sock.recv_multipart())
        assert reply.request_id == 7 and reply.ok
    dropped = control.status()["dropped"]
    assert sum(n for k, n in dropped.items() if k.startswith("control: ")) == 4, dropped
    result = subprocess.run(
        [sys.executable, "-m", "zmqpipeline", "status", ep.control],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0 and "waiting for collector" in result.stdout, result
    assert "dropped messages: control" in result.stdout
    control.stop()
    assert procs.join(10) == {"distributor": 0}


def test_a_many_part_message_first_on_the_task_endpoint_is_dropped(procs, ep):
    """The first message a read finds has too many parts: it is refused before it is
    read (the distributor crashed on it: the refusal named a message it had not read)."""
    control = _waiting_distributor(procs, ep)
    with _stranger(ep.worker) as sock:
        sock.send_multipart([b"part"] * 5)
        status = wait_for(control, lambda s: "frame count" in s["dropped"])
    assert status["dropped"]["frame count"] == 1, status["dropped"]
    control.stop()
    assert procs.join(10) == {"distributor": 0}


def test_garbage_on_the_push_endpoint_is_dropped_and_a_real_push_still_answered(tmp_path):
    """A stranger on the push socket: random bytes, a kind that does not belong there, a
    many-part message and a msgpack bomb are dropped and counted; nothing crashes, and a
    well-formed push that follows gets its reply."""
    from zmqpipeline.runtime.runtime import serve_requests

    s = make(open_class("ST_P"))
    s.start({}, 0.0)
    logic = PushLogic(s)
    endpoint = f"ipc://{tmp_path}/push.ipc"
    codec = protocol.Codec(1 << 20)
    bomb = b"\xdd" + (10**8).to_bytes(4, "big") + b"\x80" * 1000
    with runtime.RoleRuntime("distributor", SETTINGS, logging.getLogger("t")) as rt:
        sock = rt.open(zmq.ROUTER, endpoint, bind=True, admit="clients")
        stranger = rt.ctx.socket(zmq.DEALER)
        stranger.setsockopt(zmq.LINGER, 0)
        stranger.connect(endpoint)
        for frames in (
            [b"\x00\x01\x02"],
            codec.control(1, "stop", {}),  # an operator's kind, at the push endpoint
            [bytes((protocol.VERSION, protocol.PUSH)), b"", b"", b"", b""],
            [bytes((protocol.VERSION, protocol.PUSH)), bomb],
            codec.push(7, "ST_P", [{"i": 1}]),
        ):
            stranger.send_multipart(frames)
        got_reply = False
        while not got_reply:
            assert sock.poll(5000), "nothing arrived at the push endpoint"
            serve_requests(
                rt,
                sock,
                protocol.DISTRIBUTOR_PUSH,
                "push",
                lambda m, peer, frame: logic.answer(m, 0.1),
                1 << 20,
            )
            got_reply = stranger.poll(100) != 0
        reply = protocol.decode(stranger.recv_multipart())
        stranger.close()
        dropped = dict(rt.drops.counts)
    assert reply == protocol.PushReply(7, True, "", 1)
    assert sum(n for reason, n in dropped.items() if reason.startswith("push: ")) == 4, dropped
    assert s.stages.counts["ST_P"]["pushed"] == 1
