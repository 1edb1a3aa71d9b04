"""Pushing items into an open-ended task from outside the run.

A task with ``open_ended = True`` has no size known in advance: its items come from
outside, through one more socket of the distributor, its *push endpoint* (a ROUTER it
binds; under CURVE it admits only keys of the ``clients`` role). A request is one PUSH
(a list of items) or PUSH_CLOSE (no more items), answered at once by one PUSH_REPLY (see
:mod:`zmqpipeline.protocol`).

:class:`PushLogic` turns a request and the :class:`~.scheduler.Scheduler` into
a reply, with no socket in sight. :class:`Pusher` is the client (also behind
``zmqpipeline push ENDPOINT TASK_TYPE JSON`` and ``zmqpipeline close ENDPOINT TASK_TYPE``)::

    from zmqpipeline import Pusher
    pusher = Pusher("ipc:///tmp/run/push.ipc")
    pusher.push("URLS", {"url": "https://example.org"})     # 1: accepted
    pusher.push_many("URLS", [{"url": u} for u in urls])    # all of them, in batches
    pusher.close("URLS")                                    # the task may finish now

An item is accepted once it waits in the task's backlog in the distributor (bounded by
``stage_backlog``: a full backlog takes what it has room for, and the client sends the
rest as room frees up). A push to a task that does not exist, is not open-ended or is
closed is refused with a :class:`~zmqpipeline.errors.PushError` saying so.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

import zmq

from .. import protocol
from ..errors import MessageTooLarge, PushError
from ..runtime.runtime import RequestClient, RoleRuntime

if TYPE_CHECKING:
    from .scheduler import Scheduler

__all__ = ["PUSH_BATCH_ITEMS", "PUSH_TIMEOUT_S", "PushLogic", "Pusher"]

logger = logging.getLogger("zmqpipeline.pusher")

#: How long a :class:`Pusher` call waits for a reply, and for room in a full backlog.
PUSH_TIMEOUT_S = 10.0
#: Items :meth:`Pusher.push_many` sends in one PUSH.
PUSH_BATCH_ITEMS = 500
_FULL_WAIT_S = (0.005, 0.2)  # first and longest wait before offering items again


class PushLogic:
    """Answers push requests for one run; socket-free (the distributor gives it decoded
    :class:`~zmqpipeline.protocol.Push` and ``PushClose`` records)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.requests = 0

    def handle(self, msg: protocol.Push | protocol.PushClose, now: float) -> tuple[bool, str, int]:
        """``(ok, error, accepted)`` for one request; new items go out at once."""
        self.requests += 1
        try:
            if isinstance(msg, protocol.PushClose):
                self.scheduler.stages.close_stream(msg.task_type)
                logger.info("task %s: the stream of pushed items is closed", msg.task_type)
                return True, "", 0
            accepted = self.scheduler.stages.push(msg.task_type, msg.items)
        except ValueError as exc:
            return False, str(exc), 0
        finally:
            self.scheduler.journal.sync()  # journaled before the pusher hears "accepted"
        if self.scheduler.journal.broken is not None:
            return False, str(self.scheduler.journal.broken), 0  # not journaled: refused
        if accepted:
            self.scheduler.dispatch(now)
        return True, "", accepted

    def answer(self, msg: protocol.Push | protocol.PushClose, now: float) -> list[bytes]:
        """The reply to one request."""
        ok, error, accepted = self.handle(msg, now)
        return self.scheduler.codec.push_reply(msg.request_id, ok, error, accepted)


# -- the client -------------------------------------------------------------------------


class Pusher(RequestClient):
    """Push items into an open-ended task of the run whose distributor takes them at
    ``endpoint`` (its ``push_endpoint``).

    Each call opens its own socket, waits at most ``timeout`` seconds for each reply (and
    for room when the task's backlog is full), and raises :class:`PushError` when no reply
    comes or the push is refused. ``security``: CURVE keys for a tcp endpoint (default:
    ``ZMQPIPELINE_CURVE_*``, if set); the key must be in the ``clients`` role.
    """

    reply_kind = protocol.PUSH_REPLY
    default_timeout_s = PUSH_TIMEOUT_S
    error = PushError
    no_reply_hint = "no distributor taking pushes there, or it does not admit our key as a client's"

    def push(self, task_type: str, item: dict[str, Any]) -> int:
        """Push one item (a dict); returns 1 once the distributor has accepted it."""
        return self.push_many(task_type, [item])

    def push_many(self, task_type: str, items: list[dict[str, Any]]) -> int:
        """Push items (dicts), in batches of :data:`PUSH_BATCH_ITEMS`; returns how many
        were accepted (all of them, or it raises)."""
        for item in items:
            if not isinstance(item, dict):
                raise TypeError(f"an item must be a dict, not {type(item).__name__}")
        done = 0
        with RoleRuntime("pusher", self.settings, logger) as rt:
            sock = self._connect(rt)
            while done < len(items):
                batch = items[done : done + PUSH_BATCH_ITEMS]
                done += self._offer(rt, sock, task_type, batch)
        return done

    def close(self, task_type: str) -> None:
        """No more items for ``task_type``: it finishes once what was pushed is collected."""
        with RoleRuntime("pusher", self.settings, logger) as rt:
            sock = self._connect(rt)
            request_id = int.from_bytes(os.urandom(8), "big") >> 2
            self._call(rt, sock, request_id, self._codec.push_close(request_id, task_type))

    def _connect(self, rt: RoleRuntime) -> zmq.Socket[Any]:
        if self.endpoint.scheme == "ipc" and not self.endpoint.location.startswith("@"):
            if not os.path.exists(self.endpoint.location):
                raise PushError(f"no distributor at {self.endpoint}: no such file")
        sock = rt.open(zmq.DEALER, self.endpoint, bind=False)
        sock.setsockopt(zmq.LINGER, 0)
        return sock

    def _offer(
        self, rt: RoleRuntime, sock: zmq.Socket[Any], task_type: str, batch: list[dict[str, Any]]
    ) -> int:
        """Send ``batch`` until all of it is accepted, waiting while the backlog is full."""
        sent, wait = 0, _FULL_WAIT_S[0]
        deadline = time.monotonic() + self.timeout
        while sent < len(batch):
            request_id = int.from_bytes(os.urandom(8), "big") >> 2
            frames = self._encode(request_id, task_type, batch, sent)
            accepted = self._call(rt, sock, request_id, frames).accepted
            sent += accepted
            if accepted:
                wait, deadline = _FULL_WAIT_S[0], time.monotonic() + self.timeout
            elif sent < len(batch):
                if time.monotonic() + wait > deadline:
                    raise PushError(
                        f"task {task_type}: its backlog stayed full for {self.timeout:g} s "
                        f"({len(batch) - sent} item(s) not accepted)"
                    )
                time.sleep(wait)  # backpressure: the distributor has no room yet
                wait = min(wait * 2, _FULL_WAIT_S[1])
        return sent

    def _encode(
        self, request_id: int, task_type: str, batch: list[dict[str, Any]], sent: int
    ) -> list[bytes]:
        """The PUSH of ``batch[sent:]``, or of as many of them as fit in one message; an
        item that fits in none is a :class:`PushError` naming it."""
        end = len(batch)
        while True:
            try:
                return self._codec.push(request_id, task_type, batch[sent:end])
            except MessageTooLarge as exc:
                if end - sent == 1:
                    raise PushError(
                        f"task {task_type}: item {sent + 1} of the batch is too large to "
                        f"push: {exc}"
                    ) from None
                end = sent + (end - sent) // 2

    def _call(
        self, rt: RoleRuntime, sock: zmq.Socket[Any], request_id: int, frames: list[bytes]
    ) -> protocol.PushReply:
        reply: protocol.PushReply = self._exchange(rt, sock, request_id, frames)
        if not reply.ok:
            raise PushError(f"push refused: {reply.error}")
        return reply
