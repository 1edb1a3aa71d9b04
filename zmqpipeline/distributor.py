"""``Distributor``: hands out every registered task's items and ends the run when all are
collected. The decisions live in :class:`~zmqpipeline.scheduler.Scheduler`; this module
owns the sockets and the poll loop."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import zmq

from . import protocol
from .errors import ConfigurationError, ProtocolError
from .scheduler import COLLECTOR, Scheduler, check_dependencies
from .security import Security
from .settings import Settings
from .task import Task
from .transport import DropCounter, StopSignal, close_sockets, new_context, open_socket
from .types import EndpointAddress

__all__ = ["Distributor", "RunReport"]

logger = logging.getLogger("zmqpipeline.distributor")

_DRAIN = 1000  # messages read from one socket before the others get a turn
_WAITING_LOG_S = 5.0


@dataclass
class RunReport:
    """What :meth:`Distributor.run` returns: counts, failures and timings of one run."""

    #: Items collected, per task type.
    collected: dict[str, int]
    #: Items that failed for good: ``{'task_type', 'seq', 'attempts', 'error'}`` each
    #: (``seq`` is ``None`` when the task's ``handle()`` itself kept raising).
    failed: list[dict[str, Any]]
    #: Items handed out again (user code raised, a worker died, a time limit passed).
    retries: int
    #: From the first item handed out to the last ACK (or the stop).
    wall_time_s: float
    aborted: bool
    #: The whole of ``run()``: waiting for workers and metadata, and the shutdown too.
    elapsed_s: float = 0.0
    #: Hand-out to ACK, percentiles ``p50``, ``p90``, ``p99`` of the last 10,000 items.
    latency_ms: dict[str, float] = field(default_factory=dict)
    #: Items handed out, per worker id.
    per_worker: dict[str, int] = field(default_factory=dict)
    #: Per task type: ``handed_out``, ``in_flight``, ``collected``, ``failed``, ``size``
    #: (declared size or ``None``) and ``not_handed_out`` (``size - handed_out`` when the
    #: size is known and the task stopped early, else ``0`` or ``None``).
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Every worker seen: ``id``, ``host``, ``pid``, ``task_type``, ``handed_out``,
    #: ``collected`` (its results the collector ACKed, also if it died later).
    workers: list[dict[str, Any]] = field(default_factory=list)
    #: Bad messages dropped, per reason.
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True only when every item of every task was collected: the run was not stopped
        early, nothing failed (``Task.handle`` included) and nothing was left unsent."""
        unsent = any(t.get("not_handed_out") for t in self.tasks.values())
        return not self.aborted and not self.failed and not unsent

    @property
    def total(self) -> int:
        """Items collected, all task types together."""
        return sum(self.collected.values())


def _check_task_class(task_class: type[Task]) -> None:
    if not (isinstance(task_class, type) and issubclass(task_class, Task)):
        raise TypeError(f"register_task() needs a Task subclass, not {task_class!r}")
    for name in ("task_type", "endpoint"):
        if getattr(task_class, name, None) is None:
            raise TypeError(f"{task_class.__name__} has no {name}")


def _with_unsent(counts: dict[str, Any]) -> dict[str, Any]:
    size = counts.get("size")
    unsent = None if size is None else max(0, size - counts["handed_out"])
    return {**counts, "not_handed_out": unsent}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Distributor:
    """Hands out the items of every registered :class:`~zmqpipeline.Task`.

    Register tasks with :meth:`register_task` before constructing it, then call
    :meth:`run`, which blocks until every item is collected (or failed for good), tells
    workers and collector the run is over, and returns a :class:`RunReport`.
    """

    _registered: ClassVar[dict[str, type[Task]]] = {}

    @classmethod
    def register_task(cls, task_class: type[Task]) -> type[Task]:
        """Register a :class:`Task` subclass; returns it, so it works as a decorator too."""
        _check_task_class(task_class)
        cls._registered[task_class.task_type] = task_class
        return task_class

    @classmethod
    def clear_registered_tasks(cls) -> None:
        """Forget every registered task (for tests and interactive use)."""
        cls._registered.clear()

    def __init__(
        self,
        collector_endpoint: str,
        collector_ack_endpoint: str,
        receive_metadata: bool = False,
        metadata_endpoint: str | None = None,
        *,
        tasks: list[type[Task]] | None = None,
        settings: Settings | None = None,
        security: Security | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        progress_interval_s: float = 0.5,
    ) -> None:
        self.collector_endpoint = EndpointAddress(collector_endpoint)
        self.collector_ack_endpoint = EndpointAddress(collector_ack_endpoint)
        self.receive_metadata = bool(receive_metadata)
        if self.receive_metadata and metadata_endpoint is None:
            raise ConfigurationError(
                "Distributor(receive_metadata=True) needs metadata_endpoint, the address "
                "the MetaDataWorker connects to"
            )
        self.metadata_endpoint = (
            EndpointAddress(metadata_endpoint) if metadata_endpoint is not None else None
        )
        self.task_classes: dict[str, type[Task]]
        if tasks is not None:  # these, not the registry
            for task_class in tasks:
                _check_task_class(task_class)
            self.task_classes = {t.task_type: t for t in tasks}
        else:
            self.task_classes = dict(self._registered)
        if not self.task_classes:
            raise ConfigurationError("no task registered: call Distributor.register_task() first")
        check_dependencies(self.task_classes)
        self.settings = settings or Settings.from_env(security=security)
        self.on_progress = on_progress
        self.progress_interval_s = progress_interval_s
        self.report: RunReport | None = None
        self.drops = DropCounter(logger, "distributor")

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> RunReport:
        """Run the batch to its end and return the report (also kept as ``self.report``)."""
        started = time.monotonic()
        self._first_item_at: float | None = None  # set by _loop, for the report
        self._done_at: float | None = None
        ctx = new_context()
        stop = StopSignal()
        sockets: list[zmq.Socket[Any]] = []
        scheduler = Scheduler(
            [cls() for cls in self.task_classes.values()],
            self.settings,
            run=random.getrandbits(62) + 1,
        )
        try:
            routers: dict[str, zmq.Socket[Any]] = {}
            for endpoint in sorted({t.endpoint for t in self.task_classes.values()}):
                routers[endpoint] = open_socket(
                    ctx, zmq.ROUTER, endpoint, bind=True, settings=self.settings, role="distributor"
                )
            sockets.extend(routers.values())
            to_collector = open_socket(
                ctx,
                zmq.PUSH,
                self.collector_endpoint,
                bind=False,
                settings=self.settings,
                role="distributor",
            )
            acks = open_socket(
                ctx,
                zmq.PULL,
                self.collector_ack_endpoint,
                bind=False,
                settings=self.settings,
                role="distributor",
            )
            sockets += [to_collector, acks]
            meta = None
            if self.receive_metadata:
                assert self.metadata_endpoint is not None
                meta = open_socket(
                    ctx,
                    zmq.ROUTER,
                    self.metadata_endpoint,
                    bind=True,
                    settings=self.settings,
                    role="distributor",
                )
                sockets.append(meta)
            self._loop(scheduler, stop, routers, to_collector, acks, meta)
        finally:
            close_sockets(sockets)
            ctx.term()
            stop.close()
        self.drops.report()
        ended = time.monotonic()
        first = self._first_item_at or started
        done = self._done_at or ended
        self.report = self._make_report(scheduler, done - first)
        self.report.elapsed_s = ended - started
        if self.report.failed:
            logger.error(
                "run ended with %d failed item(s): %s",
                len(self.report.failed),
                ", ".join(f"{f['task_type']}/{f['seq']}" for f in self.report.failed[:20]),
            )
        logger.info("run finished: %d item(s) collected", self.report.total)
        return self.report

    def _loop(
        self,
        scheduler: Scheduler,
        stop: StopSignal,
        routers: dict[str, zmq.Socket[Any]],
        to_collector: zmq.Socket[Any],
        acks: zmq.Socket[Any],
        meta: zmq.Socket[Any] | None,
    ) -> None:
        poller = zmq.Poller()
        endpoint_of: dict[zmq.Socket[Any], str] = {}
        for endpoint, sock in routers.items():
            poller.register(sock, zmq.POLLIN)
            endpoint_of[sock] = endpoint
        poller.register(acks, zmq.POLLIN)
        if meta is not None:
            poller.register(meta, zmq.POLLIN)
        poller.register(stop.fd, zmq.POLLIN)
        interval = self.settings.heartbeat_interval_s
        now = time.monotonic()
        if meta is None:
            scheduler.start({}, now)
        else:
            logger.info("waiting for metadata at %s", self.metadata_endpoint)
        next_beat = now + interval
        next_progress = now + self.progress_interval_s
        next_waiting_log = now + _WAITING_LOG_S
        finished_confirmed = False
        end_deadline: float | None = None
        grace_end = 0.0
        while True:
            self._flush(scheduler, routers, to_collector, now)
            if scheduler.done:
                if end_deadline is None:
                    self._done_at = now
                    end_deadline = now + self.settings.end_timeout_s
                    grace_end = now + self.settings.end_grace_s
                if (finished_confirmed and now >= grace_end) or now >= end_deadline:
                    break
            wake = min(next_beat, next_progress)
            retry_at = scheduler.next_wakeup(now)
            if retry_at is not None:
                wake = min(wake, retry_at)
            if end_deadline is not None:
                wake = min(wake, end_deadline if not finished_confirmed else grace_end)
            timeout_ms = max(0, int((wake - now) * 1000) + 1)
            events = dict(poller.poll(timeout_ms))
            now = time.monotonic()
            for sock, endpoint in endpoint_of.items():
                if sock in events:
                    self._read_workers(scheduler, sock, endpoint, now)
            if acks in events:
                finished_confirmed |= self._read_acks(scheduler, acks, now)
            if meta is not None and meta in events:
                self._read_metadata(scheduler, meta, now)
            if stop.fd in events and not scheduler.done:
                logger.warning("stop requested: ending the run early")
                scheduler.finish(aborted=True)
            if now >= next_beat:
                scheduler.tick(now)
                scheduler.heartbeats()
                next_beat = now + interval
            if now >= next_waiting_log:
                self._log_waiting(scheduler)
                next_waiting_log = now + _WAITING_LOG_S
            if now >= next_progress:
                if self.on_progress is not None:
                    self.on_progress(scheduler.summary(aborted=False))
                next_progress = now + self.progress_interval_s
            scheduler.dispatch(now)
            if self._first_item_at is None and scheduler.handed_out:
                self._first_item_at = now
        if not finished_confirmed:
            logger.warning(
                "the collector did not confirm the end of the run within %.1f s",
                self.settings.end_timeout_s,
            )

    def _flush(
        self,
        scheduler: Scheduler,
        routers: dict[str, zmq.Socket[Any]],
        to_collector: zmq.Socket[Any],
        now: float,
    ) -> None:
        while scheduler.outbox:
            outbox, scheduler.outbox = scheduler.outbox, []
            for channel, identity, frames in outbox:
                if channel == COLLECTOR:
                    to_collector.send_multipart(frames)
                    continue
                assert identity is not None
                try:
                    routers[channel].send_multipart([identity, *frames], zmq.NOBLOCK)
                except zmq.ZMQError as exc:
                    if frames[0][1] == protocol.HEARTBEAT and exc.errno == zmq.EAGAIN:
                        continue  # a busy worker's queue is full of beats already
                    if frames[0][1] == protocol.RESET:
                        continue  # it has gone; nothing to reset
                    scheduler.worker_unreachable(identity, now)

    def _read_workers(
        self, scheduler: Scheduler, sock: zmq.Socket[Any], endpoint: str, now: float
    ) -> None:
        for _ in range(_DRAIN):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                kind, body = protocol.decode(frames[1:], _FROM_WORKER, "from a worker")
                scheduler.on_worker_message(endpoint, frames[0], kind, body, now)
            except ProtocolError as exc:
                self.drops.drop(exc.category, f"{exc.reason} at {endpoint}")

    def _read_acks(self, scheduler: Scheduler, sock: zmq.Socket[Any], now: float) -> bool:
        finished = False
        for _ in range(_DRAIN):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                kind, body = protocol.decode(frames, _FROM_COLLECTOR, "on the ACK socket")
                if kind == protocol.HELLO:
                    scheduler.on_collector_hello(body[0], now)
                    continue
                if body[0] != scheduler.run:
                    raise ProtocolError("message of another run", frames, "other run")
            except ProtocolError as exc:
                self.drops.drop(exc.category, exc.reason)
                continue
            if kind == protocol.ACK:
                scheduler.on_ack(body[1], now)
            else:
                finished = True
        return finished

    def _read_metadata(self, scheduler: Scheduler, sock: zmq.Socket[Any], now: float) -> None:
        for _ in range(_DRAIN):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                _, body = protocol.decode(frames[1:], _META, "at the metadata endpoint")
                if not body:
                    raise ProtocolError("META without metadata", frames, "wrong direction")
            except ProtocolError as exc:
                self.drops.drop(exc.category, f"{exc.reason} at metadata endpoint")
                continue
            if not scheduler.started:
                logger.info("metadata received")
                scheduler.start(body[0], now)
            try:
                sock.send_multipart([frames[0], *scheduler.codec.meta()], zmq.NOBLOCK)
            except zmq.ZMQError:
                pass  # the metadata worker has gone; it has delivered all the same

    def _log_waiting(self, scheduler: Scheduler) -> None:
        if not scheduler.started:
            logger.info("still waiting for metadata at %s", self.metadata_endpoint)
            return
        if scheduler.collector_id is None:
            logger.info("waiting for the collector at %s", self.collector_ack_endpoint)
            return
        for state in scheduler.tasks.values():
            if state.active and not state.workers:
                logger.info(
                    "task %s: waiting for a worker to connect to %s",
                    state.task_type,
                    state.endpoint,
                )
            elif state.active and state.in_flight and not state.task.is_complete:
                continue
            elif state.active and state.in_flight:
                logger.info(
                    "task %s: waiting for %d ACK(s) from the collector at %s",
                    state.task_type,
                    len(state.in_flight),
                    self.collector_ack_endpoint,
                )

    def _make_report(self, scheduler: Scheduler, wall_time_s: float) -> RunReport:
        summary = scheduler.summary(aborted=not all(s.finished for s in scheduler.tasks.values()))
        latency: dict[str, float] = {}
        if scheduler.latencies:
            samples = list(scheduler.latencies)
            latency = {
                "p50": _percentile(samples, 0.50) * 1000,
                "p90": _percentile(samples, 0.90) * 1000,
                "p99": _percentile(samples, 0.99) * 1000,
            }
        return RunReport(
            collected=summary["collected"],
            failed=summary["failed"],
            retries=summary["retries"],
            wall_time_s=wall_time_s,
            aborted=summary["aborted"],
            latency_ms=latency,
            per_worker={wid.decode(errors="replace"): n for wid, n in scheduler.handed_out.items()},
            tasks={tt: _with_unsent(t) for tt, t in summary["tasks"].items()},
            workers=summary["workers"],
            dropped=dict(self.drops.counts),
        )


_FROM_WORKER = frozenset(
    {protocol.READY, protocol.CREDIT, protocol.FAIL, protocol.HEARTBEAT, protocol.BYE}
)
_FROM_COLLECTOR = frozenset({protocol.ACK, protocol.FINISHED, protocol.HELLO})
_META = frozenset({protocol.META})
