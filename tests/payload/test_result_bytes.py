"""A worker's big results are bounded in bytes: a result with big values is not held in a
batch, and what was sent but not yet written out counts against the bound until ZeroMQ
lets it go. Real ZeroMQ sockets (inproc: a message stays the sender's until the receiver
has taken it), no mocks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from zmqpipeline.worker.logic import ResultBatch
from zmqpipeline.worker.unsent import UnsentResults

pytestmark = pytest.mark.timeout(30)

MiB = 1024 * 1024


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[Any], zmq.Socket[Any]]]:
    ctx = zmq.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    pull.bind("inproc://results")
    push.connect("inproc://results")
    try:
        yield push, pull
    finally:
        push.close(0)
        pull.close(0)
        ctx.term()


def test_sent_big_results_count_until_the_receiver_has_taken_them(pair):
    push, pull = pair
    unsent = UnsentResults(3 * MiB)
    batch = [[b"head", b"body", bytes([i]) * 2 * MiB] for i in range(2)]
    unsent.track(batch)  # one batch: counted until its last frame is let go
    for frames in batch:
        push.send_multipart(frames, copy=False)
    del batch, frames  # what the worker keeps of a sent message: nothing
    assert unsent.nbytes == 4 * MiB
    assert unsent.full()  # 4 MiB not yet out, over the bound of 3
    got = [pull.recv_multipart() for _ in range(2)]  # (copied: the sent ones are let go)
    assert [m[2][:1] for m in got] == [b"\x00", b"\x01"]
    for tracker, _ in list(unsent.pending):
        tracker.wait(10)  # the event ZeroMQ sets when it frees a message
    assert not unsent.full()
    assert unsent.nbytes == 0


def test_a_batch_without_big_values_is_not_tracked_and_no_bound_tracks_nothing():
    unsent = UnsentResults(MiB)
    small = [[b"head", b"body"]]
    unsent.track(small)
    assert small == [[b"head", b"body"]] and not unsent.pending
    unbounded = UnsentResults(0)
    big = [[b"head", b"body", b"x" * MiB]]
    unbounded.track(big)
    assert type(big[0][2]) is bytes
    assert not unbounded.full() and not unbounded.pending


def test_big_results_end_their_batch_once_they_reach_its_bytes():
    batch = ResultBatch(max_items=128, max_linger_s=0.1, max_bytes=1 * MiB)
    assert not batch.add(0, {"n": 1}, now=0.0, run=1, item_s=0.001)  # small: held
    blob = {"blob": b"x" * (512 * 1024)}
    assert not batch.add(1, blob, now=0.0, run=1, item_s=0.001)  # half the bytes: held
    assert batch.big  # from now on every result is weighed, none held in place
    assert batch.add(2, blob, now=0.0, run=1, item_s=0.001)  # the bytes reached: due
    assert [seq for seq, _ in batch.take()] == [0, 1, 2]
    assert batch.nbytes == 0
