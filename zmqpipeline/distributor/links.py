"""The distributor's sockets: :class:`Links` reads what arrives into the scheduler (and
the control and push logic) and sends the scheduler's outbox, never blocking."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import zmq

from .. import protocol
from ..errors import ProtocolError
from ..runtime.runtime import DRAIN, RoleRuntime, serve_requests
from ..runtime.transport import recv_frames, send_frames
from ..types import EndpointAddress
from .control import ControlLogic
from .operators import key_names, open_control_warning, sender_of
from .push import PushLogic
from .scheduler import COLLECTOR, Scheduler

__all__ = ["Links"]

logger = logging.getLogger("zmqpipeline.distributor")


def _lone(groups: list[list[Any]]) -> bool:
    """An ACK of one item (``groups`` as protocol.ack_group makes them)."""
    return len(groups) == 1 and len(groups[0][2]) == 1


class Links:
    """The distributor's sockets: reads records into the scheduler, sends its outbox.
    No send ever blocks: a worker that cannot take a message is declared gone, messages
    for a collector that is not connected wait in :attr:`collector_queue`."""

    def __init__(
        self,
        rt: RoleRuntime,
        scheduler: Scheduler,
        routers: dict[str, zmq.Socket[Any]],
        collector: zmq.Socket[Any],
        meta: zmq.Socket[Any] | None,
    ) -> None:
        self.rt, self.scheduler, self.routers = rt, scheduler, routers
        self.collector, self.meta = collector, meta
        self.collector_queue: deque[list[bytes]] = deque()
        self.poller = zmq.Poller()
        self.endpoint_of = {sock: endpoint for endpoint, sock in routers.items()}
        for sock in [*routers.values(), collector, *([meta] if meta is not None else [])]:
            self.poller.register(sock, zmq.POLLIN)
        self.poller.register(rt.stop.fd, zmq.POLLIN)
        self.control: zmq.Socket[Any] | None = None
        self.control_logic: ControlLogic | None = None
        self.push: zmq.Socket[Any] | None = None
        self.push_logic: PushLogic | None = None
        self.operator_names: dict[str, str] = {}  # CURVE keys' names (.operators)

    def open_control(self, endpoint: str) -> None:
        """Answer operators at ``endpoint`` (see :mod:`zmqpipeline.distributor.control`)."""
        self.control = self.rt.open(
            zmq.ROUTER, endpoint, bind=True, admit="operators", max_bytes=protocol.CONTROL_MAX_BYTES
        )
        self.control_logic = ControlLogic(self.scheduler, endpoint, self.rt.drops)
        self.poller.register(self.control, zmq.POLLIN)
        logger.info("control endpoint: %s", endpoint)
        security = self.rt.settings.security
        self.operator_names = key_names(security)
        warning = open_control_warning(EndpointAddress(endpoint), security)
        if warning:
            logger.warning("%s", warning)

    def open_push(self, endpoint: str) -> None:
        """Take items pushed into open-ended tasks at ``endpoint`` (:mod:`.push`)."""
        self.push = self.rt.open(zmq.ROUTER, endpoint, bind=True, admit="clients")
        self.push_logic = PushLogic(self.scheduler)
        self.poller.register(self.push, zmq.POLLIN)
        logger.info("push endpoint: %s", endpoint)

    def flush(self, now: float) -> None:
        scheduler = self.scheduler
        while scheduler.outbox:
            outbox, scheduler.outbox = scheduler.outbox, []
            for channel, identity, frames in outbox:
                if channel == COLLECTOR:
                    if frames[0][1] == protocol.PING and self.collector_queue:
                        continue  # it is not connected: beats need no backlog
                    self.collector_queue.append(frames)
                    self._send_to_collector()  # in order, before what follows
                    continue
                assert identity is not None
                try:
                    send_frames(self.routers[channel], frames, to=identity)
                except zmq.ZMQError as exc:
                    kind = frames[0][1]
                    if kind == protocol.ALIVE and exc.errno == zmq.EAGAIN:
                        continue  # a busy worker's queue is full of beats already
                    if kind == protocol.RESET:
                        continue  # it has gone; nothing to reset
                    scheduler.worker_unreachable(identity, now)
        self._send_to_collector()
        scheduler.tokens.prepare()  # all is out: a lone item's next token, made while we wait

    def _send_to_collector(self) -> None:
        queue = self.collector_queue
        while queue:
            try:
                send_frames(self.collector, queue[0])
            except zmq.Again:
                return
            queue.popleft()

    def read(self, events: dict[Any, int], now: float) -> bool:
        """Read what arrived; ``True`` if the collector confirmed the end of the run."""
        for sock, endpoint in self.endpoint_of.items():
            if sock in events:
                self._drain(sock, 3, f"from a worker at {endpoint}", endpoint, now)
        finished = False
        if self.collector in events:
            finished = self._drain(self.collector, 2, "from the collector", None, now)
        if self.meta is not None and self.meta in events:
            self._drain(self.meta, 3, "at the metadata endpoint", None, now)
        if self.control is not None and self.control in events:
            names = self.operator_names
            serve_requests(
                self.rt,
                self.control,
                protocol.DISTRIBUTOR_CONTROL,
                "control",
                lambda msg, peer, frame: self._answer_control(
                    msg, now, sender_of(peer, frame, names)
                ),
            )
        if self.push is not None and self.push in events:
            logic = self.push_logic
            assert logic is not None
            serve_requests(
                self.rt,
                self.push,
                protocol.DISTRIBUTOR_PUSH,
                "push",
                lambda msg, peer, frame: logic.answer(msg, now),
                self.rt.settings.max_message_bytes,
            )
        return finished

    def _answer_control(self, msg: protocol.Control, now: float, sender: str) -> list[bytes]:
        assert self.control_logic is not None
        ok, body = self.control_logic.handle(msg, now, sender)
        return self.scheduler.codec.control_reply(msg.request_id, ok, body)

    def _drain(
        self, sock: zmq.Socket[Any], n: int, where: str, endpoint: str | None, now: float
    ) -> bool:
        finished = False
        accept = (
            protocol.DISTRIBUTOR_FROM_WORKER
            if endpoint
            else protocol.DISTRIBUTOR_FROM_COLLECTOR
            if n == 2
            else protocol.DISTRIBUTOR_METADATA
        )
        max_bytes = self.rt.settings.max_message_bytes
        for i in range(DRAIN):
            frames = None  # (a message of too many frames raises before it is read)
            try:
                frames = recv_frames(sock, n, waiting=not i)  # the poll said one waits
                if frames is None:
                    break
                msg = protocol.decode(frames[-2:], accept, where, max_bytes)
            except ProtocolError as exc:
                self.rt.drops.drop(exc.category, f"{exc.reason} {where}")
                if endpoint is not None and frames and exc.category == "wrong version":
                    # Answer in our version: the peer (or `zmqpipeline check`) sees why.
                    reset = (endpoint, frames[0], self.scheduler.codec.reset())
                    self.scheduler.outbox.append(reset)
                continue
            if endpoint is not None:
                self.scheduler.on_worker_message(endpoint, frames[0], msg, now)
            elif n == 3:
                self._on_metadata(frames[0], msg, now)
            else:
                finished |= self._on_collector(msg, now)
                if type(msg) is protocol.Ack and _lone(msg.groups):
                    # A lone item's ACK: the items its credit makes room for go out
                    # (dispatch, flush) before anyone asks whether another ACK came (a
                    # libzmq call on every round trip's path); the next poll asks.
                    break
        return finished

    def _on_collector(self, msg: Any, now: float) -> bool:
        scheduler = self.scheduler
        if type(msg) is protocol.Hello:
            scheduler.on_collector_hello(msg.collector_id, now)
        elif msg.run != scheduler.run:
            self.rt.drops.drop("other run", "a message of another run from the collector")
        elif type(msg) is protocol.Ack:
            scheduler.on_ack(msg.groups, now)
        else:
            return True
        return False

    def _on_metadata(self, sender: bytes, msg: protocol.Meta, now: float) -> None:
        if not self.scheduler.started:
            logger.info("metadata received")
            self.scheduler.start(msg.metadata, now)
        assert self.meta is not None
        try:
            send_frames(self.meta, self.scheduler.codec.meta_ok(), to=sender)
        except zmq.ZMQError:
            pass  # the metadata worker has gone; it has delivered all the same
