"""Reading frames off a socket (:func:`zmqpipeline.transport.recv_frames`), on real
sockets over inproc."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from zmqpipeline.errors import ProtocolError
from zmqpipeline.transport import recv_frames

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
