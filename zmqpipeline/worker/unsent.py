"""What a worker still holds of the big results it has sent: a bound in bytes.

A result's big values (:mod:`zmqpipeline.protocol.frames`) are sent without a copy: the
worker's memory holds them until ZeroMQ has written them out to the collector, later. A
worker whose results are big and quick to make (tiny items, megabytes back) would
otherwise hold all of them while a slower collector reads, up to its whole prefetch. So
while the bytes of big values not yet written out reach the bound, the worker starts no
item and asks for no credit: it then holds at most about the bound plus one batch.

Only the last frame of each batch sent is tracked (``zmq.Frame(track=True)``, some
microseconds each): a worker's results go down one pipe to one collector, in order, so
once that frame is written out the batch's earlier ones are too.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import zmq

__all__ = ["UnsentResults"]


class UnsentResults:
    """Bytes of big values in results sent and not yet written out, against ``limit``
    (``0``: no bound; then nothing is tracked)."""

    __slots__ = ("limit", "nbytes", "pending")

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.nbytes = 0
        self.pending: deque[tuple[zmq.MessageTracker, int]] = deque()

    def track(self, messages: list[list[Any]]) -> None:
        """Count the big values (frames after the body) of a batch's RESULT ``messages``,
        about to be sent in this order, until the last of them is written out (that
        message's last frame is replaced by a tracked one)."""
        nbytes, last = 0, None
        for frames in messages:
            if len(frames) > 2:
                nbytes += sum(memoryview(value).nbytes for value in frames[2:])
                last = frames
        if not self.limit or last is None:
            return
        frame = last[-1] = zmq.Frame(last[-1], track=True)
        self.pending.append((zmq.MessageTracker(frame), nbytes))
        self.nbytes += nbytes

    def full(self) -> bool:
        """The bound is reached: start nothing new until :meth:`full` says otherwise."""
        pending = self.pending
        while pending and pending[0][0].done:
            self.nbytes -= pending.popleft()[1]
        return bool(self.limit) and self.nbytes >= self.limit
