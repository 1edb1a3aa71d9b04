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
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from typing import Any, ClassVar, cast

import zmq

from .. import protocol
from ..errors import ProtocolError, SerializationError, ZmqPipelineError
from ..security import Security
from ..settings import Settings
from ..task import check_class_attributes
from ..transport import DropCounter, StopSignal, close_sockets, heartbeat, new_context, open_socket
from ..types import EndpointAddress, TaskType
from ..utils.messages import MESSAGE_TYPE_DATA
from ..utils.serializer import find_unpackable

__all__ = ["ServiceWorker"]

logger = logging.getLogger("zmqpipeline.serviceworker")

_FROM_SERVICE = frozenset(
    {protocol.REQUEST, protocol.HEARTBEAT, protocol.RESET, protocol.DISCONNECT}
)
_MAX_ERROR_CHARS = 64 * 1024
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)


class ServiceWorker:
    """Answers requests of one task type. Implement :meth:`handle_message`.

    ``task_type`` (a :class:`~zmqpipeline.TaskType`, or a registered ``str``) and
    ``endpoint`` (the service's backend endpoint) are class attributes.
    """

    task_type: ClassVar[TaskType]
    endpoint: ClassVar[EndpointAddress]
    #: CURVE keys for a tcp endpoint (``None``: the ``ZMQPIPELINE_CURVE_*`` environment
    #: variables, or no security).
    security: ClassVar[Security | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_class_attributes(cls, cls.__name__)

    def __init__(self, *, settings: Settings | None = None) -> None:
        for name in ("task_type", "endpoint"):
            if getattr(self, name, None) is None:
                raise TypeError(f"{type(self).__name__} has no {name}")
        self.settings = settings or Settings.from_env(security=self.security)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}".encode()
        self.requests_handled = 0
        self.requests_failed = 0
        self.drops = DropCounter(logger, f"service worker {self.task_type}")
        self._last_heard = 0.0  # when the service was last heard from (monotonic)

    def handle_message(self, data: Any, task_type: str, msgtype: str) -> Any:
        """Answer one request: ``data`` is what the client sent (one element of a list
        request), ``msgtype`` is ``MESSAGE_TYPE_DATA``. Return the reply: a dict, list or
        anything msgpack carries. An exception is sent to the client as an error."""
        raise NotImplementedError(f"{type(self).__name__} must implement handle_message()")

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Answer requests until the service says DISCONNECT or SIGINT/SIGTERM; then return."""
        ctx = new_context()
        stop = StopSignal()
        stopped = threading.Event()
        beat: threading.Thread | None = None
        self._codec = protocol.Codec(self.settings.max_message_bytes)
        try:
            beat = threading.Thread(
                target=heartbeat,
                name="zmqpipeline-service-heartbeat",
                daemon=True,
                args=(ctx, self.endpoint, self.worker_id, self.settings, stopped),
            )
            beat.start()
            self._loop(ctx, stop)
        finally:
            stopped.set()
            if beat is not None:
                beat.join()
            ctx.term()
            stop.close()
            self.drops.report()
        logger.info(
            "service worker %s finished: %d request(s) answered, %d raised",
            self.worker_id.decode(),
            self.requests_handled,
            self.requests_failed,
        )

    def _connect(self, ctx: zmq.Context[Any]) -> zmq.Socket[Any]:
        sock = open_socket(
            ctx,
            zmq.DEALER,
            self.endpoint,
            bind=False,
            settings=self.settings,
            identity=self.worker_id,
            role="service worker",
        )
        sock.send_multipart(self._codec.sready(self.task_type))
        return sock

    def _loop(self, ctx: zmq.Context[Any], stop: StopSignal) -> None:
        liveness = self.settings.liveness_s
        sock = self._connect(ctx)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(stop.fd, zmq.POLLIN)
        self._last_heard = time.monotonic()
        outage_logged = False
        try:
            while True:
                timeout_ms = max(1, int((self._last_heard + liveness - time.monotonic()) * 1000))
                events = dict(poller.poll(timeout_ms))
                if stop.fd in events or stop.is_set:
                    logger.info("service worker %s: stop requested", self.worker_id.decode())
                    try:
                        sock.send_multipart(self._codec.disconnect(), zmq.NOBLOCK)
                    except zmq.ZMQError:
                        pass
                    return
                if sock in events:
                    outage_logged = False
                    if self._read(sock, stop):
                        return
                elif time.monotonic() - self._last_heard >= liveness:
                    # Silence: the service died or restarted. A fresh socket drops anything
                    # stale queued for the old connection and announces this worker once.
                    (logger.debug if outage_logged else logger.info)(
                        "service worker %s: no word from the service at %s for %g s; reconnecting",
                        self.worker_id.decode(),
                        self.endpoint,
                        liveness,
                    )
                    outage_logged = True
                    poller.unregister(sock)
                    sock.close(linger=0)
                    sock = self._connect(ctx)
                    poller.register(sock, zmq.POLLIN)
                    self._last_heard = time.monotonic()
        finally:
            close_sockets([sock])

    def _read(self, sock: zmq.Socket[Any], stop: StopSignal) -> bool:
        """Handle what the service sent; ``True`` when it said DISCONNECT."""
        while not stop.is_set:
            if not cast(int, sock.getsockopt(_EVENTS)) & _POLLIN:  # cheaper than catching zmq.Again
                return False
            frames = sock.recv_multipart(_NOBLOCK)
            # Read time, not send time: beats queued while handle_message ran count now.
            self._last_heard = time.monotonic()
            try:
                kind, body = protocol.decode(frames, _FROM_SERVICE, "from the service")
                if kind == protocol.REQUEST and type(body[0]) is not bytes:
                    raise ProtocolError(
                        "REQUEST without the client's address: a client's, not the service's",
                        frames,
                        "wrong direction",
                    )
            except ProtocolError as exc:
                self.drops.drop(exc.category, exc.reason)
                continue
            if kind == protocol.REQUEST:
                sock.send_multipart(self._answer(body[0], body[1], body[2]))
            elif kind == protocol.RESET:
                logger.info(
                    "service worker %s: the service asks it to announce itself again",
                    self.worker_id.decode(),
                )
                sock.send_multipart(self._codec.sready(self.task_type))
            elif kind == protocol.DISCONNECT:
                logger.info("service worker %s: the service is stopping", self.worker_id.decode())
                return True
        return False

    def _answer(self, client: bytes, request_id: int, data: Any) -> list[bytes]:
        try:
            result = self.handle_message(data, self.task_type, MESSAGE_TYPE_DATA)
        except Exception as exc:
            return self._failed(client, request_id, exc, "raised")
        try:
            frames = self._codec.worker_reply(client, request_id, result, self.task_type)
        except ZmqPipelineError as exc:  # cannot be serialized, or too large
            error: Exception = exc
            found = find_unpackable(result)
            if found is not None:  # name the place in the reply, not in the wire message
                key, kind = found
                error = SerializationError(
                    f"{type(self).__name__}.handle_message returned a reply msgpack cannot "
                    f"carry: value at {key or 'top level'} ({kind})"
                )
            return self._failed(client, request_id, error, "cannot send its reply:")
        self.requests_handled += 1
        return frames

    def _failed(self, client: bytes, request_id: int, exc: Exception, what: str) -> list[bytes]:
        text = "".join(traceback.format_exception(exc))
        self.requests_failed += 1
        logger.error(
            "service worker %s: request %d %s\n%s",
            self.worker_id.decode(),
            request_id,
            "raised in handle_message:" if what == "raised" else "has a reply it cannot send:",
            text,
        )
        summary = traceback.format_exception_only(type(exc), exc)[-1].strip()
        error = f"worker {self.worker_id.decode()} {what} {summary}\n{text}"
        return self._codec.worker_error(client, request_id, error[:_MAX_ERROR_CHARS])
