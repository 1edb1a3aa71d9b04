"""``Service``: a long-running, load-balanced router between clients and service workers.

The live counterpart of the batch pipeline, after the ZeroMQ guide's Majordomo pattern.
Clients (:class:`~zmqpipeline.ServiceClient`, DEALER) connect to the *frontend*, service
workers (:class:`~zmqpipeline.ServiceWorker`, DEALER) to the *backend*; the service binds
both as ROUTERs. The frames are in :mod:`zmqpipeline.protocol` (Service-mode table). The
decisions live in :class:`~zmqpipeline.service.broker.Broker`, a plain object fed decoded
messages and the clock; :class:`Service` owns the sockets and the poll loop.

What the service promises, and what it decides:

* **Routing.** Each request goes to the free worker of its task type that has been free
  the longest (least recently used), as a JOB. A worker holds one request at a time; its
  WORKER_REPLY (or WORKER_ERROR) frees it and goes back, as REPLY (or REQUEST_ERROR), to
  the client that asked, by routing id.
* **Task types.** The service cannot see the clients' ``TaskType`` registry, so a task
  type is "known" when a worker has announced it. A REQUEST whose task type is not a
  ``str`` is malformed (dropped and counted, like all bad input); one whose task type is
  empty is refused at once with an error reply. A request for a task type no worker
  serves waits up to ``worker_wait_s`` (default :data:`WORKER_WAIT_S`, 5 s) for
  one to join, then gets an error reply naming the task type. While workers of its type
  exist but are all busy a request waits as long as it takes (the client's timeout decides).
* **At-least-once.** The service keeps every request until its reply has passed through.
  A worker silent for ``heartbeat_interval_s × liveness_misses`` (2 s by default; both
  overridable with ``ZMQPIPELINE_*`` variables), or whose connection is gone, is removed,
  and the request it held goes to the front of the queue for another worker. A request is
  handed out at most ``max_attempts`` times (3) before the client gets an error, so one
  request that kills every worker cannot kill them all. A worker that was only slow may
  still answer: the first reply wins and later ones are dropped by the client, so a
  handler may run twice for one request; make it idempotent.
* **Duplicates.** A client re-sending a request id that is still pending (its retry after
  a timeout) does not start a second copy; the original keeps running and its reply
  answers both. Every well-formed WORKER_REPLY is forwarded to the client it names, even one the
  service no longer tracks (it restarted meanwhile): clients take the first reply for an
  id they await and ignore the rest.
* **Failures in user code.** A worker whose ``handle_message`` raises sends REQUEST_ERROR
  with the exception and traceback; the service forwards it unchanged and does not retry
  (the same input would most likely raise again). The worker carries on.
* **Restarts.** Workers and clients may start first: ZeroMQ queues their messages until
  the service binds. A worker the service does not know (the service restarted) is sent
  RESET when it next beats or replies and announces itself again with SREADY.
* **Bad input** (malformed frames, wrong kinds, bad shapes) is dropped, counted and logged
  once per reason; an exception in a handler is logged and the loop goes on.
* **Bounded memory.** At most ``max_in_flight`` requests are pending; beyond that a
  request is refused at once ("service busy").
* **Stopping.** SIGINT/SIGTERM (or :meth:`Service.stop`) end :meth:`Service.run`: every
  known worker gets DISCONNECT (its ``run()`` returns). Requests still pending get no
  reply: their clients time out (or get an answer from a restarted service on retry).
  Every send is non-blocking: a full or vanished peer never holds the loop.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq

from .. import protocol
from ..errors import ConfigurationError, ProtocolError
from ..runtime.runtime import DRAIN, RoleRuntime
from ..runtime.transport import recv_frames, send_frames
from ..security import Security
from ..settings import Settings
from ..types import EndpointAddress
from .broker import BACKEND, FRONTEND, WORKER_WAIT_S, Broker

__all__ = ["WORKER_WAIT_S", "Broker", "Service"]

logger = logging.getLogger("zmqpipeline.service")


class Service:
    """Routes client requests to service workers; :meth:`run` blocks until SIGINT/SIGTERM
    or :meth:`stop`. See the module docstring for the guarantees.

    ``worker_wait_s``: how long a request waits for a worker of its task type to join
    (default :data:`WORKER_WAIT_S`). ``security``: CURVE keys for tcp endpoints (default:
    the ``ZMQPIPELINE_CURVE_*`` variables, or none); ``settings`` overrides everything.
    """

    def __init__(
        self,
        frontend_endpoint: str,
        backend_endpoint: str,
        *,
        worker_wait_s: float | None = None,
        settings: Settings | None = None,
        security: Security | None = None,
    ) -> None:
        self.frontend_endpoint = EndpointAddress(frontend_endpoint)
        self.backend_endpoint = EndpointAddress(backend_endpoint)
        if self.frontend_endpoint == self.backend_endpoint:
            raise ConfigurationError(
                f"the frontend and backend endpoints must differ, both are {frontend_endpoint}"
            )
        wait = WORKER_WAIT_S if worker_wait_s is None else float(worker_wait_s)
        if wait < 0:
            raise ConfigurationError(f"worker_wait_s must not be negative, got {worker_wait_s}")
        self.worker_wait_s = wait
        self.settings = settings or Settings.from_env(security=security)
        self.broker: Broker | None = None
        self._runtime: RoleRuntime | None = None
        self._stop_requested = False

    def stop(self) -> None:
        """Ask :meth:`run` to return (from any thread)."""
        self._stop_requested = True
        rt = self._runtime
        if rt is not None:
            rt.stop.set()

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM or :meth:`stop`, then tell the workers to stop."""
        broker = self.broker = Broker(self.settings, self.worker_wait_s)
        try:
            with RoleRuntime("service", self.settings, logger) as rt:
                self._runtime = rt
                if self._stop_requested:
                    rt.stop.set()
                frontend = rt.open(zmq.ROUTER, self.frontend_endpoint, bind=True, admit="clients")
                backend = rt.open(
                    zmq.ROUTER, self.backend_endpoint, bind=True, admit="serviceworkers"
                )
                logger.info(
                    "service up: clients at %s, workers at %s",
                    self.frontend_endpoint,
                    self.backend_endpoint,
                )
                self._loop(rt, broker, frontend, backend)
                told = broker.disconnect_all()
                self._flush(broker, frontend, backend, time.monotonic())
                logger.info("service stopping: told %d worker(s) to stop", told)
                # leaving the runtime lingers (bounded) to deliver the DISCONNECTs
        finally:
            self._runtime = None
            self._stop_requested = False
        logger.info(
            "service stopped: %s",
            ", ".join(f"{k} {v}" for k, v in sorted(broker.stats.items())) or "no requests",
        )

    def _loop(
        self, rt: RoleRuntime, broker: Broker, frontend: zmq.Socket[Any], backend: zmq.Socket[Any]
    ) -> None:
        poller = zmq.Poller()
        poller.register(frontend, zmq.POLLIN)
        poller.register(backend, zmq.POLLIN)
        poller.register(rt.stop.fd, zmq.POLLIN)
        interval = self.settings.heartbeat_interval_s
        now = time.monotonic()
        next_tick = now + interval
        while True:
            self._flush(broker, frontend, backend, now)
            events = dict(poller.poll(max(0, int((next_tick - now) * 1000)) + 1))
            now = time.monotonic()
            if rt.stop.fd in events or rt.stop.is_set:
                logger.info("service: stop requested")
                return
            if backend in events:
                self._read(rt, broker, backend, BACKEND, now)
            if frontend in events:
                self._read(rt, broker, frontend, FRONTEND, now)
            if now >= next_tick:
                broker.tick(now)
                next_tick = now + interval

    def _read(
        self, rt: RoleRuntime, broker: Broker, sock: zmq.Socket[Any], channel: int, now: float
    ) -> None:
        where = "frontend" if channel == FRONTEND else "backend"
        limit = self.settings.max_message_bytes
        for i in range(DRAIN):
            try:  # [routing id, header, body]; a message of more parts is not kept
                frames = recv_frames(sock, 3, waiting=not i)  # the poll said one waits
            except ProtocolError as exc:
                rt.drops.drop(exc.category, f"{exc.reason} at the {where}")
                continue
            if frames is None:
                return
            try:
                if channel == FRONTEND:
                    request = protocol.decode(
                        frames[1:], protocol.SERVICE_FROM_CLIENT, "from a client", limit
                    )
                    broker.on_request(frames[0], request, now)
                else:
                    msg = protocol.decode(
                        frames[1:], protocol.SERVICE_FROM_WORKER, "from a service worker", limit
                    )
                    broker.on_worker(frames[0], msg, now)
            except ProtocolError as exc:
                rt.drops.drop(exc.category, f"{exc.reason} at the {where}")
            except Exception:  # one bad message must not stop the service
                logger.exception("service: error handling a message at the %s", where)
                rt.drops.drop("handler error")

    def _flush(
        self, broker: Broker, frontend: zmq.Socket[Any], backend: zmq.Socket[Any], now: float
    ) -> None:
        while broker.outbox:
            outbox, broker.outbox = broker.outbox, []
            for channel, identity, frames in outbox:
                sock = frontend if channel == FRONTEND else backend
                try:
                    # The routing id goes first: a peer that is gone or full fails there,
                    # before any other frame is queued.
                    send_frames(sock, frames, to=identity)
                except zmq.ZMQError as exc:
                    if channel == FRONTEND:
                        broker.stats["replies undeliverable"] += 1  # the client has gone
                        continue
                    kind = frames[0][1]
                    if kind == protocol.ALIVE and exc.errno == zmq.EAGAIN:
                        continue  # a busy worker's queue is full of beats already
                    if kind in (protocol.RESET, protocol.DISCONNECT):
                        continue  # it has gone; nothing to tell it
                    broker.worker_unreachable(identity, now)
