"""The service's decisions, apart from its sockets: workers, queues, pending requests.

:class:`Broker` is fed decoded records (:mod:`zmqpipeline.protocol`) and the clock, and
appends what it wants sent to :attr:`Broker.outbox`; :class:`~zmqpipeline.service.Service`
owns the sockets and drains it.
What it promises (routing, waiting, at-least-once, duplicates) is written down in
:mod:`zmqpipeline.service.service`. Unit tests drive it directly.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from .. import protocol
from ..errors import ProtocolError, ZmqPipelineError
from ..settings import Settings

__all__ = ["BACKEND", "FRONTEND", "WORKER_WAIT_S", "Broker", "PendingRequest", "WorkerRecord"]

logger = logging.getLogger("zmqpipeline.service")

#: How long a request for a task type that no worker serves waits for one to join.
WORKER_WAIT_S = 5.0
#: Outbox channels.
FRONTEND = 0
BACKEND = 1

_Key = tuple[bytes, int]  # (client routing id, request id)


@dataclass(eq=False, slots=True)
class PendingRequest:
    key: _Key
    task_type: str
    frames: list[bytes]  # the JOB a worker gets: encoded once, re-sent on re-route
    queued_at: float
    attempts: int = 0  # times handed to a worker
    worker: bytes | None = None  # None while queued
    routed: list[bytes] = field(default_factory=list)  # every worker it was handed to


@dataclass(eq=False, slots=True)
class WorkerRecord:
    wid: bytes
    task_type: str
    expires_at: float
    request: PendingRequest | None = None


class Broker:
    """The service's state, apart from its sockets: workers, queues, pending requests.

    Feed it :meth:`on_request` / :meth:`on_worker` / :meth:`tick`; it appends
    ``(channel, routing id, frames)`` to :attr:`outbox`, which the owner sends.
    """

    def __init__(self, settings: Settings, worker_wait_s: float = WORKER_WAIT_S) -> None:
        self.settings = settings
        self.worker_wait_s = worker_wait_s
        self.codec = protocol.Codec(settings.max_message_bytes)
        self.requests: dict[_Key, PendingRequest] = {}
        self.queues: dict[str, deque[PendingRequest]] = {}
        self.workers: dict[bytes, WorkerRecord] = {}
        self.idle: dict[str, OrderedDict[bytes, None]] = {}  # oldest-free first
        self.n_workers: Counter[str] = Counter()
        self.no_worker_since: dict[str, float] = {}
        self.reset_sent: dict[bytes, float] = {}
        self.outbox: list[tuple[int, bytes, list[bytes]]] = []
        self.stats: Counter[str] = Counter()
        self._alive = self.codec.alive()

    # -- clients ------------------------------------------------------------------------

    def on_request(self, client: bytes, msg: protocol.Request, now: float) -> None:
        """A REQUEST from the client whose routing id is ``client``."""
        if type(msg) is not protocol.Request:
            raise ProtocolError(f"{_kind_name(msg)} is not sent by clients", [], "wrong direction")
        request_id, task_type = msg.request_id, msg.task_type
        self.stats["requests"] += 1
        if not task_type:  # decoding made sure it is a str
            self.refuse(client, request_id, "task type must be a non-empty str, got an empty str")
            return
        key = (client, request_id)
        if key in self.requests:
            self.stats["duplicates"] += 1  # a retry of a request still in progress
            return
        if len(self.requests) >= self.settings.max_in_flight:
            self.refuse(client, request_id, f"service busy: {len(self.requests)} requests pending")
            return
        try:
            frames = self.codec.job(client, request_id, msg.data, task_type)
        except ZmqPipelineError as exc:  # too large once the routing id is added
            self.refuse(client, request_id, str(exc))
            return
        request = PendingRequest(key, task_type, frames, now)
        self.requests[key] = request
        queue = self.queues.setdefault(task_type, deque())
        if not queue and not self.n_workers[task_type]:
            logger.info(
                "no worker for task type %r yet: requests wait up to %g s for one",
                task_type,
                self.worker_wait_s,
            )
        queue.append(request)
        self._dispatch(task_type)

    def refuse(self, client: bytes, request_id: int, error: str) -> None:
        self.stats["refused"] += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("refused request %d: %s", request_id, error)
        self.outbox.append(
            (FRONTEND, client, self.codec.request_error(request_id, f"service: {error}"))
        )

    # -- workers ------------------------------------------------------------------------

    def on_worker(self, wid: bytes, msg: Any, now: float) -> None:
        """A decoded record from the worker whose routing id is ``wid``."""
        worker = self.workers.get(wid)
        if worker is not None:
            worker.expires_at = now + self.settings.liveness_s
        kind = type(msg)
        if kind is protocol.SReady:
            self._on_ready(wid, worker, msg.task_type, now)
        elif kind is protocol.WorkerReply or kind is protocol.WorkerError:
            self._on_answer(wid, worker, msg, now)
        elif kind is protocol.Heartbeat:
            beating = self.workers.get(msg.worker_id)  # the beat thread names its worker
            if beating is not None:
                beating.expires_at = now + self.settings.liveness_s
            else:
                self._reset(msg.worker_id, now)
        elif kind is protocol.Disconnect:
            if worker is not None:
                self._remove(worker, "left", now)
        else:
            raise ProtocolError(
                f"{_kind_name(msg)} is not sent by service workers", [], "wrong direction"
            )

    def _on_ready(
        self, wid: bytes, worker: WorkerRecord | None, task_type: str, now: float
    ) -> None:
        if worker is not None and worker.task_type != task_type:
            self._remove(worker, f"re-announced as {task_type!r}", now)
            worker = None
        if worker is None:
            worker = WorkerRecord(wid, task_type, now + self.settings.liveness_s)
            self.workers[wid] = worker
            self.n_workers[task_type] += 1
            self.no_worker_since.pop(task_type, None)
            logger.info("worker %s joined for task type %r", _name(wid), task_type)
        elif worker.request is not None:
            # SREADY means "I hold nothing": the request we sent it was lost on the way.
            request, worker.request = worker.request, None
            if self.requests.get(request.key) is request:
                self._requeue(request, "its worker announced itself free", now)
        else:
            return  # idle already: keep its place in the line
        self.idle.setdefault(task_type, OrderedDict())[wid] = None
        self._dispatch(task_type)

    def _on_answer(
        self,
        wid: bytes,
        worker: WorkerRecord | None,
        msg: protocol.WorkerReply | protocol.WorkerError,
        now: float,
    ) -> None:
        key = (msg.client, msg.request_id)
        request = self.requests.get(key)
        held = worker.request if worker is not None else None
        if request is None or wid not in request.routed:
            # Only a worker the request was routed to may answer it: any other (a rogue
            # answering others' requests) reaches no client.
            if held is None or held.key != key:
                self._not_routed(wid, worker, request, now)
                return
            request = None  # its late answer to a request answered already: it is free
        if request is None:
            self._free(wid, worker, key)
            return
        del self.requests[key]
        if isinstance(msg, protocol.WorkerReply):
            self.stats["replies"] += 1
            try:
                frames = self.codec.reply(msg.request_id, msg.data)
            except ZmqPipelineError as exc:
                frames = self.codec.request_error(msg.request_id, f"service: {exc}")
        else:
            self.stats["worker errors"] += 1
            frames = self.codec.request_error(msg.request_id, msg.error)
        self.outbox.append((FRONTEND, msg.client, frames))
        if worker is None:
            self._reset(wid, now)  # a worker we lost track of: let it announce itself again
            return
        self._free(wid, worker, key)

    def _free(self, wid: bytes, worker: WorkerRecord | None, key: _Key) -> None:
        """``worker`` answered ``key``: if that is what it holds, it is free again."""
        held = worker.request if worker is not None else None
        if worker is not None and held is not None and held.key == key:
            worker.request = None
            self.idle.setdefault(worker.task_type, OrderedDict())[wid] = None
            self._dispatch(worker.task_type)

    def _not_routed(
        self, wid: bytes, worker: WorkerRecord | None, request: PendingRequest | None, now: float
    ) -> None:
        """A reply from ``wid`` to a request never routed to it: dropped, counted, logged
        once."""
        self.stats["replies not routed to their sender"] += 1
        if self.stats["replies not routed to their sender"] == 1:
            logger.warning(
                "dropped a reply from worker %s to a request %s; further ones are only counted",
                _name(wid),
                "that is not pending" if request is None else "never routed to it",
            )
        if worker is None:
            self._reset(wid, now)

    def worker_unreachable(self, wid: bytes, now: float) -> None:
        """A send to ``wid`` failed: its connection is gone."""
        worker = self.workers.get(wid)
        if worker is not None:
            self._remove(worker, "went away", now)

    # -- time ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Remove silent workers, refuse requests that waited too long for a worker, beat."""
        expired = [worker for worker in self.workers.values() if worker.expires_at <= now]
        for worker in expired:  # first out of the line, so no re-routed request goes to one
            idle = self.idle.get(worker.task_type)
            if idle is not None:
                idle.pop(worker.wid, None)
        for worker in expired:
            self._remove(worker, f"silent for {self.settings.liveness_s:g} s", now)
        for task_type in list(self.queues):
            if not self.n_workers[task_type]:
                self._expire_waiting(task_type, now)
        stale = now - self.settings.liveness_s
        self.reset_sent = {w: t for w, t in self.reset_sent.items() if t > stale}
        for wid in self.workers:
            self.outbox.append((BACKEND, wid, self._alive))

    def disconnect_all(self) -> int:
        """Tell every known worker to stop; returns how many there were."""
        frames = self.codec.disconnect()
        for wid in self.workers:
            self.outbox.append((BACKEND, wid, frames))
        return len(self.workers)

    # -- internals ----------------------------------------------------------------------

    def _dispatch(self, task_type: str) -> None:
        queue = self.queues.get(task_type)
        idle = self.idle.get(task_type)
        while queue and idle:
            request = queue.popleft()
            if self.requests.get(request.key) is not request or request.worker is not None:
                continue  # answered or refused while queued
            wid, _ = idle.popitem(last=False)
            worker = self.workers[wid]
            request.worker = wid
            request.routed.append(wid)
            request.attempts += 1
            worker.request = request
            self.outbox.append((BACKEND, wid, request.frames))
        if queue is not None and not queue:
            del self.queues[task_type]

    def _requeue(self, request: PendingRequest, reason: str, now: float) -> None:
        request.worker = None
        if request.attempts >= self.settings.max_attempts:
            del self.requests[request.key]
            self.refuse(
                request.key[0],
                request.key[1],
                f"request to task type {request.task_type!r} was handed to {request.attempts} "
                f"workers and each was lost ({reason}); not tried again",
            )
            return
        self.stats["rerouted"] += 1
        self.queues.setdefault(request.task_type, deque()).appendleft(request)
        self._dispatch(request.task_type)

    def _remove(self, worker: WorkerRecord, reason: str, now: float) -> None:
        del self.workers[worker.wid]
        task_type = worker.task_type
        idle = self.idle.get(task_type)
        if idle is not None:
            idle.pop(worker.wid, None)
        self.n_workers[task_type] -= 1
        if not self.n_workers[task_type]:
            del self.n_workers[task_type]
            self.idle.pop(task_type, None)
            self.no_worker_since[task_type] = now
        request, worker.request = worker.request, None
        held = request is not None and self.requests.get(request.key) is request
        if reason == "left":
            logger.info("worker %s (%s) left", _name(worker.wid), task_type)
        else:
            self.stats["workers lost"] += 1
            logger.warning(
                "worker %s (%s) %s%s",
                _name(worker.wid),
                task_type,
                reason,
                ": re-routing the request it held" if held else "",
            )
        if request is not None and held:
            self._requeue(request, f"worker {reason}", now)

    def _expire_waiting(self, task_type: str, now: float) -> None:
        since = self.no_worker_since.get(task_type)
        keep: deque[PendingRequest] = deque()
        expired = 0
        for request in self.queues[task_type]:
            if self.requests.get(request.key) is not request or request.worker is not None:
                continue
            start = request.queued_at if since is None else max(request.queued_at, since)
            if now - start < self.worker_wait_s:
                keep.append(request)
                continue
            del self.requests[request.key]
            expired += 1
            self.refuse(
                request.key[0],
                request.key[1],
                f"no worker for task type {task_type!r} joined within {self.worker_wait_s:g} s",
            )
        if expired:
            logger.warning(
                "refused %d request(s) for task type %r: no worker joined within %g s",
                expired,
                task_type,
                self.worker_wait_s,
            )
        if keep:
            self.queues[task_type] = keep
        else:
            del self.queues[task_type]
            self.no_worker_since.pop(task_type, None)

    def _reset(self, wid: bytes, now: float) -> None:
        # At most one RESET per interval per worker: a busy worker reads them all later.
        if now - self.reset_sent.get(wid, -1e18) < self.settings.heartbeat_interval_s:
            return
        self.reset_sent[wid] = now
        self.outbox.append((BACKEND, wid, self.codec.reset()))


def _name(wid: bytes) -> str:
    return wid.decode(errors="replace") if wid[:1].isalnum() else wid.hex()


def _kind_name(msg: Any) -> str:
    try:
        return protocol.KIND_NAMES[protocol.kind_of(msg)]
    except KeyError:
        return type(msg).__name__
