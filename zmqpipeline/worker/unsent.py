"""What a worker still holds of the big results it has sent: a bound in bytes.

A result's big values (:mod:`zmqpipeline.protocol.frames`) are sent without a copy: the
worker's memory holds them until ZeroMQ has written them out to the collector, later. A
worker whose results are big and quick to make (tiny items, megabytes back) would
otherwise hold all of them while a slower collector reads, up to its whole prefetch. So
the frames of a result that has big values are sent tracked (``zmq.Frame(track=True)``),
and while the bytes not yet written out reach the bound, the worker starts no item and
asks for no credit: the worker then holds at most about the bound plus one result.
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

    def track(self, frames: list[Any]) -> list[Any]:
        """The RESULT message ``frames`` (body first, then its big values), its big values
        tracked and counted. A message without big values comes back as it is."""
        if not self.limit or len(frames) <= 2:
            return frames
        big = [zmq.Frame(value, track=True) for value in frames[2:]]
        self.pending.append((zmq.MessageTracker(*big), sum(len(f) for f in big)))
        self.nbytes += self.pending[-1][1]
        return [*frames[:2], *big]

    def full(self) -> bool:
        """The bound is reached: start nothing new until :meth:`full` says otherwise."""
        pending = self.pending
        while pending and pending[0][0].done:
            self.nbytes -= pending.popleft()[1]
        return bool(self.limit) and self.nbytes >= self.limit
