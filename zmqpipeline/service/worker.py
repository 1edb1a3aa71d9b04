"""``ServiceWorker``: answers the requests a :class:`~zmqpipeline.Service` routes to it.

Subclass it, set ``task_type`` and ``endpoint`` (the service's backend) and implement
:meth:`ServiceWorker.handle_message`; :meth:`ServiceWorker.run` connects, announces the
worker (SREADY), answers one request at a time and returns when the service says
DISCONNECT or on SIGINT/SIGTERM.

Heartbeats are hidden from user code: a small thread with its own socket tells the service
the process is alive every ``heartbeat_interval_s``, even while ``handle_message`` runs for
a long time. The main loop counts the service dead after ``heartbeat_interval_s ×
liveness_misses`` of silence while idle; it then reopens its socket and announces itself
again, so a restarted service gets its workers back.

No send waits forever: SIGINT/SIGTERM end :meth:`ServiceWorker.run` within moments whether
the service is up, gone or never was (during ``handle_message``, once it returns).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
import uuid
from typing import Any, ClassVar

import zmq

from .. import protocol
from ..errors import ProtocolError, SerializationError, ZmqPipelineError
from ..runtime.runtime import Role, RoleRuntime, UserCodeError, call_user
from ..runtime.transport import NOBLOCK, close_sockets, recv_frames
from ..settings import Settings
from ..types import EndpointAddress, TaskType
from ..utils.messages import MESSAGE_TYPE_DATA
from ..utils.serializer import find_unpackable

__all__ = ["ServiceWorker"]

logger = logging.getLogger("zmqpipeline.serviceworker")


class ServiceWorker(Role):
    """Answers requests of one task type. Implement :meth:`handle_message`.

    ``task_type`` (a :class:`~zmqpipeline.TaskType`, or a registered ``str``) and
    ``endpoint`` (the service's backend endpoint) are class attributes.
    """

    task_type: ClassVar[TaskType]
    endpoint: ClassVar[EndpointAddress]

    required = ("task_type", "endpoint")

    def __init__(self, *, settings: Settings | None = None) -> None:
        super().__init__(settings=settings)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}".encode()
        self.requests_handled = 0
        self.requests_failed = 0
        self._codec = protocol.Codec(self.settings.max_message_bytes)
        self._last_heard = 0.0  # when the service was last heard from (monotonic)

    def handle_message(self, data: Any, task_type: str, msgtype: str) -> Any:
        """Answer one request: ``data`` is what the client sent (one element of a list
        request), ``msgtype`` is ``MESSAGE_TYPE_DATA``. Return the reply: a dict, list or
        anything msgpack carries. An exception is sent to the client as an error."""
        raise NotImplementedError(f"{type(self).__name__} must implement handle_message()")

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Answer requests until the service says DISCONNECT or SIGINT/SIGTERM; then return."""
        with RoleRuntime(f"service worker {self.task_type}", self.settings, logger) as rt:
            rt.start_heartbeat(self.endpoint, self.worker_id)
            self._loop(rt)
        logger.info(
            "service worker %s finished: %d request(s) answered, %d raised",
            self.worker_id.decode(),
            self.requests_handled,
            self.requests_failed,
        )

    @property
    def _name(self) -> str:
        return self.worker_id.decode()

    def _connect(self, rt: RoleRuntime) -> zmq.Socket[Any]:
        sock = rt.open(zmq.DEALER, self.endpoint, bind=False, identity=self.worker_id)
        self._send(rt, sock, self._codec.sready(self.task_type), "SREADY")
        self._last_heard = time.monotonic()
        return sock

    def _reconnect(self, rt: RoleRuntime, sock: zmq.Socket[Any]) -> zmq.Socket[Any]:
        # A fresh socket drops anything stale queued for the old connection and announces
        # this worker once.
        rt.sockets.remove(sock)
        sock.setsockopt(zmq.LINGER, 0)
        close_sockets([sock])
        return self._connect(rt)

    def _send(self, rt: RoleRuntime, sock: zmq.Socket[Any], frames: list[bytes], what: str) -> None:
        """Send, waiting at most the liveness period (or until a stop request): a message
        that cannot go by then is lost, and the silence that follows reconnects."""
        if not rt.send(sock, frames, self.settings.liveness_s) and not rt.stop.is_set:
            logger.warning(
                "service worker %s: could not send %s to the service at %s for %g s; dropped",
                self._name,
                what,
                self.endpoint,
                self.settings.liveness_s,
            )

    def _loop(self, rt: RoleRuntime) -> None:
        liveness = self.settings.liveness_s
        sock = self._connect(rt)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(rt.stop.fd, zmq.POLLIN)
        outage_logged = False
        while not rt.stop.is_set:
            timeout_ms = max(1, int((self._last_heard + liveness - time.monotonic()) * 1000))
            events = dict(poller.poll(timeout_ms))
            if rt.stop.fd in events or rt.stop.is_set:
                break
            if sock in events:
                outage_logged = False
                if self._read(rt, sock):
                    return
            elif time.monotonic() - self._last_heard >= liveness:
                (logger.debug if outage_logged else logger.info)(
                    "service worker %s: no word from the service at %s for %g s; reconnecting",
                    self._name,
                    self.endpoint,
                    liveness,
                )
                outage_logged = True
                poller.unregister(sock)
                sock = self._reconnect(rt, sock)
                poller.register(sock, zmq.POLLIN)
        logger.info("service worker %s: stop requested", self._name)
        try:
            sock.send_multipart(self._codec.disconnect(), NOBLOCK)
        except zmq.ZMQError:
            pass

    def _read(self, rt: RoleRuntime, sock: zmq.Socket[Any]) -> bool:
        """Handle what the service sent; ``True`` when it said DISCONNECT."""
        limit = self.settings.max_message_bytes
        while not rt.stop.is_set:
            try:
                frames = recv_frames(sock, 2)  # [header, body]; more parts are not kept
                if frames is None:
                    return False
                # Read time, not send time: beats queued while handle_message ran count now.
                self._last_heard = time.monotonic()
                msg = protocol.decode(frames, protocol.SERVICE_WORKER, "from the service", limit)
            except ProtocolError as exc:
                rt.drops.drop(exc.category, exc.reason)
                continue
            if type(msg) is protocol.Job:
                answer = self._answer(msg)
                self._send(rt, sock, answer, f"the answer to request {msg.request_id}")
            elif type(msg) is protocol.Reset:
                logger.info(
                    "service worker %s: the service asks it to announce itself again", self._name
                )
                self._send(rt, sock, self._codec.sready(self.task_type), "SREADY")
            elif type(msg) is protocol.Disconnect:
                logger.info("service worker %s: the service is stopping", self._name)
                return True
            # protocol.Alive: hearing it was all it was for
        return False

    # -- answering ------------------------------------------------------------------------

    def _answer(self, job: protocol.Job) -> list[bytes]:
        """WORKER_REPLY with what handle_message returned, or WORKER_ERROR if it raised or
        its reply cannot be sent."""
        try:
            result = call_user(
                logger,
                f"service worker {self._name}: {type(self).__name__}.handle_message",
                self.handle_message,
                job.data,
                self.task_type,
                MESSAGE_TYPE_DATA,
                item=f"request {job.request_id}",
            )
        except UserCodeError as exc:
            self.requests_failed += 1
            return self._error(job, "raised", exc.exc, exc.text)
        try:
            frames = self._codec.worker_reply(job.client, job.request_id, result, self.task_type)
        except ZmqPipelineError as exc:  # cannot be serialized, or too large
            return self._unsendable(job, result, exc)
        self.requests_handled += 1
        return frames

    def _unsendable(self, job: protocol.Job, result: Any, exc: Exception) -> list[bytes]:
        error: Exception = exc
        found = find_unpackable(result)
        if found is not None:  # name the place in the reply, not in the wire message
            key, kind = found
            error = SerializationError(
                f"{type(self).__name__}.handle_message returned a reply msgpack cannot "
                f"carry: value at {key or 'top level'} ({kind})"
            )
        text = "".join(traceback.format_exception(error))
        self.requests_failed += 1
        logger.error(
            "service worker %s: request %d has a reply it cannot send:\n%s",
            self._name,
            job.request_id,
            text,
        )
        return self._error(job, "cannot send its reply:", error, text)

    def _error(self, job: protocol.Job, what: str, exc: BaseException, text: str) -> list[bytes]:
        summary = traceback.format_exception_only(type(exc), exc)[-1].strip()
        error = f"worker {self._name} {what} {summary}\n{text}"
        return self._codec.worker_error(job.client, job.request_id, error)
