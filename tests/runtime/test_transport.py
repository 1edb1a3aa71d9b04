"""Reading and sending frames (:func:`zmqpipeline.runtime.transport.recv_frames` and
:func:`~zmqpipeline.runtime.transport.send_frames`), on real sockets over inproc."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from zmqpipeline.errors import ProtocolError
from zmqpipeline.runtime.transport import recv_frames, send_frames

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[Any], zmq.Socket[Any]]]:
    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    pull.bind("inproc://frames")
    push.connect("inproc://frames")
    yield push, pull
    ctx.destroy(linger=0)


@pytest.mark.parametrize("waiting", [False, True])
def test_nothing_to_read_is_none_whether_or_not_a_poll_said_so(pair, waiting):
    _, pull = pair
    assert recv_frames(pull, 2, waiting) is None


def test_a_read_after_a_poll_takes_the_message_and_refuses_one_of_many_parts(pair):
    push, pull = pair
    push.send_multipart([b"a", b"b", b"c", b"d"])
    push.send_multipart([b"x", b"y"])
    assert pull.poll(5000) == zmq.POLLIN
    with pytest.raises(ProtocolError) as info:
        recv_frames(pull, 2, waiting=True)
    assert info.value.category == "frame count"
    assert recv_frames(pull, 2) == [b"x", b"y"]  # the next message is whole
    assert recv_frames(pull, 2) is None


def test_frames_sent_arrive_as_one_message_of_the_same_bytes(pair):
    push, pull = pair
    send_frames(push, [b"\x01R", b"", b"x" * 100_000])
    send_frames(push, [b"alone"])
    assert pull.poll(5000) == zmq.POLLIN
    assert recv_frames(pull, 3, waiting=True) == [b"\x01R", b"", b"x" * 100_000]
    assert recv_frames(pull, 3) == [b"alone"]


def test_a_router_sends_to_the_peer_named_and_a_full_queue_takes_nothing():
    ctx = zmq.Context()
    try:
        router = ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.bind("inproc://router")
        dealers = {}
        for name in (b"a", b"b"):
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.IDENTITY, name)
            dealer.setsockopt(zmq.RCVHWM, 1)
            dealer.connect("inproc://router")
            send_frames(dealer, [b"hello"])
            dealers[name] = dealer
        for _ in dealers:
            assert router.poll(5000) == zmq.POLLIN
            assert recv_frames(router, 2, waiting=True)[1] == b"hello"
        send_frames(router, [b"k", b"for b"], to=b"b")
        assert dealers[b"b"].poll(5000) == zmq.POLLIN
        assert recv_frames(dealers[b"b"], 2, waiting=True) == [b"k", b"for b"]
        assert recv_frames(dealers[b"a"], 2) is None
        # b takes no more: the send raises and nothing of it arrives, not even a part
        router.setsockopt(zmq.SNDHWM, 1)
        sent = 0
        with pytest.raises(zmq.Again):
            for sent in range(10_000):
                send_frames(router, [b"k", str(sent).encode()], to=b"b")
        got = []
        while dealers[b"b"].poll(200) == zmq.POLLIN:
            got.append(recv_frames(dealers[b"b"], 2, waiting=True))
        assert got == [[b"k", str(i).encode()] for i in range(sent)]
    finally:
        ctx.destroy(linger=0)
