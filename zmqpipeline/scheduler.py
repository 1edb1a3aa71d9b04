"""The distributor's state, apart from its sockets: tasks, workers, credit, in-flight items,
retries and dependency readiness.

A :class:`Scheduler` is fed decoded messages and the current time and appends what it
wants sent to :attr:`Scheduler.outbox`; the :class:`~zmqpipeline.distributor.Distributor`
owns the sockets and drains it. Unit tests drive it directly.
"""

from __future__ import annotations

import logging
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from . import protocol
from .errors import ConfigurationError, MessageTooLarge, SerializationError
from .settings import Settings
from .task import Task
from .utils.messages import MESSAGE_TYPE_DATA

__all__ = ["COLLECTOR", "Scheduler", "check_dependencies"]

logger = logging.getLogger("zmqpipeline.distributor")
task_logger = logging.getLogger("zmqpipeline.task")

#: Outbox channel of the socket to the collector (worker channels are task endpoints).
COLLECTOR = "collector"

_LATENCY_SAMPLES = 10_000
_END_FAILURES = 1000


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


@dataclass(eq=False)
class WorkerRecord:
    wid: bytes
    task_type: str
    capacity: int
    credit: int
    last_seen: float
    accepted: bool = False
    held: set[int] = field(default_factory=set)  # seqs handed to it, not yet ACKed
    handed_out: int = 0
    collected: int = 0  # its results that the collector ACKed


@dataclass(eq=False)
class Item:
    seq: int
    payload: dict[str, Any]
    worker: bytes | None = None  # None while waiting in the retry queue
    attempts: int = 0
    sent_at: float = 0.0
    first_sent_at: float = 0.0


@dataclass(eq=False)
class TaskState:
    task: Task
    task_type: str
    endpoint: str
    dependencies: list[str]
    active: bool = False
    finished: bool = False
    next_seq: int = 0
    in_flight: dict[int, Item] = field(default_factory=dict)  # handed out, not yet ACKed
    retry: deque[tuple[float, int]] = field(default_factory=deque)  # (ready_at, seq)
    workers: dict[bytes, WorkerRecord] = field(default_factory=dict)
    collected: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    retries: int = 0
    last_ack_data: dict[str, Any] | None = None
    held_back: bool = False  # is_available_for_handling said no; wait for an ACK
    handle_errors: int = 0
    rotation: int = 0


def task_size(task: Task) -> int | None:
    """The number of items ``task`` declares (``n_items`` or ``len(task)``), else ``None``."""
    size = getattr(task, "n_items", None)
    if size is None and hasattr(task, "__len__"):
        try:
            size = len(task)
        except Exception:
            return None
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def check_dependencies(tasks: dict[str, type[Task]]) -> None:
    """Refuse unknown dependencies and cycles, naming them."""
    for task_type, cls in tasks.items():
        unknown = [dep for dep in cls.dependencies if dep not in tasks]
        if unknown:
            raise ConfigurationError(
                f"task {cls.__name__} ({task_type}) depends on unregistered task type(s): "
                + ", ".join(sorted(unknown))
            )
    done: set[str] = set()

    def visit(task_type: str, path: list[str]) -> None:
        if task_type in path:
            cycle = [*path[path.index(task_type) :], task_type]
            raise ConfigurationError("dependency cycle: " + " -> ".join(cycle))
        if task_type in done:
            return
        for dep in tasks[task_type].dependencies:
            visit(dep, [*path, task_type])
        done.add(task_type)

    for task_type in sorted(tasks):
        visit(task_type, [])


class Scheduler:
    """Everything the distributor decides, with no socket in sight."""

    def __init__(self, tasks: list[Task], settings: Settings, run: int) -> None:
        self.settings = settings
        self.run = run
        self.tasks: dict[str, TaskState] = {
            task.task_type: TaskState(
                task=task,
                task_type=task.task_type,
                endpoint=task.endpoint,
                dependencies=list(task.dependencies),
            )
            for task in tasks
        }
        self.workers: dict[bytes, TaskState] = {}  # worker id -> its task
        self.outbox: list[tuple[str, bytes | None, list[bytes]]] = []
        self.codec = protocol.Codec(settings.max_message_bytes)
        self.metadata: dict[str, Any] | None = None
        self.done = False
        self.last_finished = ""
        self.latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)
        self.stale_acks = 0
        self.unknown_task_types: set[str] = set()
        self.handed_out: Counter[bytes] = Counter()  # per worker id, for the report
        self.collector_id: bytes | None = None
        # Every worker seen this run, kept after it leaves (for the report): id, host, pid,
        # task type, items handed out and items collected.
        self.worker_log: dict[bytes, dict[str, Any]] = {}

    # -- run life cycle ---------------------------------------------------------------

    def start(self, metadata: dict[str, Any], now: float) -> None:
        """Metadata is known (``{}`` if none is expected): initialise tasks and begin."""
        self.metadata = metadata
        for state in self.tasks.values():
            try:
                state.task.initialize(metadata)
            except Exception:
                self._handle_raised(state, traceback.format_exc(), "initialize")
        self.outbox.append(
            (COLLECTOR, None, self.codec.start(self.run, metadata, list(self.tasks)))
        )
        self._activate_ready_tasks()
        self.dispatch(now)

    @property
    def started(self) -> bool:
        return self.metadata is not None

    def _activate_ready_tasks(self) -> None:
        for state in self.tasks.values():
            if state.active or state.finished:
                continue
            if all(self.tasks[dep].finished for dep in state.dependencies):
                state.active = True
                logger.info("task %s is active", state.task_type)
                for worker in state.workers.values():
                    self._accept(state, worker)

    def _accept(self, state: TaskState, worker: WorkerRecord) -> None:
        worker.accepted = True
        assert self.metadata is not None
        self.outbox.append(
            (state.endpoint, worker.wid, self.codec.welcome(self.run, self.metadata))
        )

    def _check_finished(self, state: TaskState) -> None:
        if state.finished or not state.active:
            return
        if state.task.is_complete and not state.in_flight:
            state.finished = True
            state.active = False
            self.last_finished = state.task_type
            logger.info(
                "task %s finished: %d collected, %d failed, %d retries",
                state.task_type,
                state.collected,
                len(state.failed),
                state.retries,
            )
            self._activate_ready_tasks()
            if all(s.finished for s in self.tasks.values()):
                self.finish(aborted=False)

    def finish(self, aborted: bool) -> None:
        """End the run: tell every worker and the collector."""
        if self.done:
            return
        self.done = True
        end = self.codec.end(self.run, self.end_summary(aborted))
        for state in self.tasks.values():
            for wid in state.workers:
                self.outbox.append((state.endpoint, wid, end))
        self.outbox.append((COLLECTOR, None, end))

    def end_summary(self, aborted: bool) -> dict[str, Any]:
        """What END carries to the collector's ``handle_finished``: the summary without
        the items' data, with at most :data:`_END_FAILURES` failures (each error's last
        line), so END stays small however the run went."""
        failed = [
            {**{k: v for k, v in f.items() if k != "data"}, "error": _last_line(f["error"])}
            for s in self.tasks.values()
            for f in s.failed[:_END_FAILURES]
        ]
        return {
            "collected": {tt: s.collected for tt, s in self.tasks.items()},
            "failed": failed[:_END_FAILURES],
            "retries": sum(s.retries for s in self.tasks.values()),
            "aborted": aborted,
            "task_type": self.last_finished,
        }

    def summary(self, aborted: bool) -> dict[str, Any]:
        """Counts of the run so far: what END carries and ``on_progress`` receives.

        ``tasks`` maps each task type to ``handed_out`` (items made by ``handle``),
        ``in_flight``, ``collected``, ``failed`` and ``size`` (the task's declared size,
        ``None`` if it declares none); ``workers`` describes every worker seen.
        """
        return {
            "tasks": {
                tt: {
                    "handed_out": s.next_seq,
                    "in_flight": len(s.in_flight),
                    "collected": s.collected,
                    "failed": len(s.failed),
                    "size": task_size(s.task),
                }
                for tt, s in self.tasks.items()
            },
            "workers": [dict(w) for w in self.worker_log.values()],
            "collected": {tt: s.collected for tt, s in self.tasks.items()},
            "failed": [f for s in self.tasks.values() for f in s.failed],
            "retries": sum(s.retries for s in self.tasks.values()),
            "aborted": aborted,
            "task_type": self.last_finished,
        }

    # -- messages from workers --------------------------------------------------------

    def on_worker_message(
        self, endpoint: str, wid: bytes, kind: int, body: list[Any], now: float
    ) -> None:
        if kind == protocol.READY:
            self._on_ready(endpoint, wid, body[0], body[1], body[2], now)
            return
        if kind == protocol.HEARTBEAT and body:
            wid = body[0]  # sent from the worker's heartbeat socket, names the worker
        state = self.workers.get(wid)
        if state is None:
            # Declared dead, or we restarted: tell it to introduce itself again.
            if kind != protocol.BYE:
                self.outbox.append((endpoint, wid, self.codec.reset()))
            return
        worker = state.workers[wid]
        worker.last_seen = now
        if kind == protocol.CREDIT:
            worker.credit = min(worker.credit + body[0], worker.capacity)
        elif kind == protocol.FAIL:
            self._on_fail(state, worker, body[0], body[1], now)
        elif kind == protocol.BYE:
            # It hands back what it had not started; items sent while its BYE was on the
            # way, and results not yet ACKed, go round again too (the collector dedupes).
            for seq in sorted(worker.held):
                item = state.in_flight.get(seq)
                if item is not None:
                    self._unassign(state, item)
                    state.retry.appendleft((now, seq))
            self._remove_worker(state, worker, reason=None, now=now)
        elif kind == protocol.HEARTBEAT:
            pass
        else:
            logger.debug("ignoring %s from worker", protocol.KIND_NAMES.get(kind, kind))

    def _on_ready(
        self, endpoint: str, wid: bytes, task_type: str, capacity: int, free: int, now: float
    ) -> None:
        state = self.tasks.get(task_type)
        if state is None or state.endpoint != endpoint:
            if task_type not in self.unknown_task_types:
                self.unknown_task_types.add(task_type)
                logger.warning(
                    "a worker for task type %r connected to %s, but no registered task of "
                    "that type is served there; ignoring it",
                    task_type,
                    endpoint,
                )
            return
        capacity = max(1, capacity)
        worker = state.workers.get(wid)
        if worker is None:
            other = self.workers.get(wid)
            if other is not None:  # same id, other task type: treat as a new worker
                self._remove_worker(other, other.workers[wid], reason="worker re-joined", now=now)
            worker = WorkerRecord(wid, task_type, capacity, max(0, min(free, capacity)), now)
            state.workers[wid] = worker
            self.workers[wid] = state
            host, _, rest = wid.decode(errors="replace").partition(":")
            pid = rest.partition(":")[0]
            self.worker_log.setdefault(
                wid,
                {
                    "id": wid.decode(errors="replace"),
                    "host": host,
                    "pid": int(pid) if pid.isdigit() else None,
                    "task_type": task_type,
                    "handed_out": 0,
                    "collected": 0,
                },
            )
            logger.info(
                "worker %s joined task %s (asks for %d item(s), may hold up to %d)",
                wid.decode(errors="replace"),
                task_type,
                worker.credit,
                capacity,
            )
        else:
            worker.capacity = capacity
            worker.credit = max(0, min(free, capacity))
            worker.last_seen = now
        if self.done or state.finished:
            self.outbox.append((endpoint, wid, self.codec.end(self.run, self.end_summary(False))))
        elif state.active and self.started:
            self._accept(state, worker)

    def _on_fail(
        self, state: TaskState, worker: WorkerRecord, seq: int, error: str, now: float
    ) -> None:
        item = state.in_flight.get(seq)
        if item is None or item.worker != worker.wid:
            return  # already re-issued or collected
        self._unassign(state, item)
        self._retry_or_fail(state, item, error, now, backoff=True)

    # -- messages from the collector --------------------------------------------------

    def on_ack(self, entries: list[list[Any]], now: float) -> None:
        touched: set[str] = set()
        for task_type, seq, ack_data, error in entries:
            state = self.tasks.get(task_type)
            item = state.in_flight.get(seq) if state is not None else None
            if state is None or item is None:
                self.stale_acks += 1
                continue
            touched.add(task_type)
            if error is not None:  # handle_collection raised: try the item again
                self._unassign(state, item)
                self._retry_or_fail(state, item, error, now, backoff=True)
                continue
            del state.in_flight[seq]
            if item.worker is not None:
                worker = state.workers.get(item.worker)
                if worker is not None:
                    worker.held.discard(seq)
            state.collected += 1
            if item.worker is not None and item.worker in self.worker_log:
                self.worker_log[item.worker]["collected"] += 1
            state.last_ack_data = ack_data
            state.held_back = False
            self.latencies.append(now - item.first_sent_at)
        for task_type in touched:
            self._check_finished(self.tasks[task_type])

    def on_collector_hello(self, collector_id: bytes, now: float) -> None:
        """A collector (re)started. Send it START; if it replaces an earlier one, the
        results that one had not ACKed are gone with it: hand those items out again."""
        previous, self.collector_id = self.collector_id, collector_id
        if self.metadata is None or self.done:
            return  # START goes out when the run begins
        self.outbox.append(
            (COLLECTOR, None, self.codec.start(self.run, self.metadata, list(self.tasks)))
        )
        if previous is not None and collector_id != previous:
            logger.warning("a new collector replaced the old one: re-issuing un-ACKed items")
            for state in self.tasks.values():
                for item in state.in_flight.values():
                    if item.worker is not None:
                        self._unassign(state, item)
                        state.retry.appendleft((now, item.seq))

    # -- time ---------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Declare silent workers dead, re-issue items over their time limit."""
        if self.done:
            return  # workers leave as they get END: nothing to re-issue any more
        deadline = now - self.settings.liveness_s
        for state in self.tasks.values():
            for worker in list(state.workers.values()):
                if worker.last_seen < deadline:
                    self._remove_worker(state, worker, reason="worker died", now=now)
            limit = state.task.item_time_limit_s
            if limit is not None and state.active:
                for item in list(state.in_flight.values()):
                    if item.worker is not None and now - item.sent_at > limit:
                        self._unassign(state, item)
                        self._retry_or_fail(
                            state, item, f"no ACK within {limit} s", now, backoff=False
                        )

    def heartbeats(self) -> None:
        if self.done:
            return
        beat = self.codec.heartbeat()
        for state in self.tasks.values():
            for wid in state.workers:
                self.outbox.append((state.endpoint, wid, beat))

    def worker_unreachable(self, wid: bytes, now: float) -> None:
        """A send to ``wid`` failed: its connection is gone."""
        state = self.workers.get(wid)
        if state is not None and not self.done:
            self._remove_worker(state, state.workers[wid], reason="worker went away", now=now)

    def next_wakeup(self, now: float) -> float | None:
        """Earliest time a delayed retry becomes ready (``None`` if none is waiting)."""
        times = [s.retry[0][0] for s in self.tasks.values() if s.active and s.retry]
        return min(times) if times else None

    # -- failures ---------------------------------------------------------------------

    def _unassign(self, state: TaskState, item: Item) -> None:
        if item.worker is not None:
            worker = state.workers.get(item.worker)
            if worker is not None:
                worker.held.discard(item.seq)
            item.worker = None

    def _remove_worker(
        self, state: TaskState, worker: WorkerRecord, reason: str | None, now: float
    ) -> None:
        del state.workers[worker.wid]
        self.workers.pop(worker.wid, None)
        if reason is None:
            logger.info("worker %s left", worker.wid.decode(errors="replace"))
            return
        logger.warning(
            "%s: %s (task %s), re-issuing its %d item(s)",
            reason,
            worker.wid.decode(errors="replace"),
            state.task_type,
            len(worker.held),
        )
        for seq in sorted(worker.held):
            item = state.in_flight.get(seq)
            if item is not None:
                item.worker = None
                self._retry_or_fail(state, item, reason, now, backoff=False)
        worker.held.clear()

    def _retry_or_fail(
        self,
        state: TaskState,
        item: Item,
        error: str,
        now: float,
        backoff: bool,
        hopeless: bool = False,
    ) -> None:
        item.attempts += 1
        if hopeless or item.attempts >= self.settings.max_attempts:
            del state.in_flight[item.seq]
            state.failed.append(
                {
                    "task_type": state.task_type,
                    "seq": item.seq,
                    "item_id": f"{state.task_type}/{item.seq}",
                    "attempts": item.attempts,
                    "error": error,
                    "data": item.payload,
                }
            )
            logger.error(
                "item %s/%d failed for good after %d attempt(s): %s",
                state.task_type,
                item.seq,
                item.attempts,
                error.strip().splitlines()[-1:],
            )
            self.outbox.append(
                (COLLECTOR, None, self.codec.skip(self.run, state.task_type, item.seq))
            )
            self._check_finished(state)
            return
        state.retries += 1
        delay = 0.0
        if backoff:
            delay = min(
                self.settings.retry_backoff_s * 2 ** (item.attempts - 1),
                self.settings.retry_backoff_max_s,
            )
        if delay:
            state.retry.append((now + delay, item.seq))
        else:
            state.retry.appendleft((now, item.seq))

    # -- handing out work ---------------------------------------------------------------

    def dispatch(self, now: float) -> None:
        """Give every accepted worker with credit as many items as it can take.

        Nothing goes out before a collector has said HELLO: results would only wait in it.
        """
        if not self.started or self.done or self.collector_id is None:
            return
        for state in self.tasks.values():
            if not state.active or not state.workers:
                continue
            workers = [w for w in state.workers.values() if w.accepted and w.credit > 0]
            if not workers:
                continue
            start = state.rotation % len(workers)
            state.rotation += 1
            for worker in workers[start:] + workers[:start]:
                items: list[list[Any]] = []
                while worker.credit > 0:
                    item = self._next_item(state, worker.wid, now)
                    if item is None:
                        break
                    item.worker = worker.wid
                    item.sent_at = now
                    worker.held.add(item.seq)
                    worker.credit -= 1
                    self.handed_out[worker.wid] += 1
                    self.worker_log[worker.wid]["handed_out"] += 1
                    items.append([item.seq, item.payload])
                if not items:
                    break
                try:
                    frames = self.codec.data(self.run, items, state.task_type)
                except (SerializationError, MessageTooLarge):
                    self._send_one_by_one(state, worker, items, now)
                else:
                    self.outbox.append((state.endpoint, worker.wid, frames))
            self._check_finished(state)

    def _send_one_by_one(
        self, state: TaskState, worker: WorkerRecord, items: list[list[Any]], now: float
    ) -> None:
        """A batch would not pack: send its items singly and fail those that cannot go
        at all (a value msgpack cannot carry, or too big) -- retrying would not help."""
        for seq, payload in items:
            try:
                frames = self.codec.data(self.run, [[seq, payload]], state.task_type)
            except (SerializationError, MessageTooLarge) as exc:
                item = state.in_flight[seq]
                self._unassign(state, item)
                worker.credit += 1
                self._retry_or_fail(state, item, str(exc), now, backoff=False, hopeless=True)
            else:
                self.outbox.append((state.endpoint, worker.wid, frames))

    def _next_item(self, state: TaskState, wid: bytes, now: float) -> Item | None:
        while state.retry and state.retry[0][0] <= now:
            _, seq = state.retry.popleft()
            item = state.in_flight.get(seq)
            if item is not None and item.worker is None:
                return item
        task = state.task
        if task.is_complete or state.held_back:
            return None
        if len(state.in_flight) >= self.settings.max_in_flight:
            return None
        try:
            if not task.is_available_for_handling(state.last_ack_data):
                state.held_back = True
                return None
        except Exception:
            self._handle_raised(state, traceback.format_exc(), "is_available_for_handling")
            return None
        try:
            payload = task.handle(self.metadata or {}, wid, MESSAGE_TYPE_DATA)
            if payload is None:
                payload = {}
            elif not isinstance(payload, dict):
                raise TypeError(
                    f"{type(task).__name__}.handle() must return a dict or None, "
                    f"not {type(payload).__name__}"
                )
        except Exception:
            self._handle_raised(state, traceback.format_exc(), "handle")
            return None
        item = Item(state.next_seq, payload, first_sent_at=now)
        state.next_seq += 1
        state.in_flight[item.seq] = item
        return item

    def _handle_raised(self, state: TaskState, error: str, where: str) -> None:
        """User code in the task raised: a reported failure. By default the task hands
        out nothing more (``Task.continue_after_error`` chooses to go on)."""
        call = state.next_seq + state.handle_errors + 1
        state.handle_errors += 1
        task_logger.error(
            "%s.%s() raised on call %d:\n%s", type(state.task).__name__, where, call, error
        )
        state.failed.append(
            {
                "task_type": state.task_type,
                "seq": None,
                "item_id": f"{state.task_type}/{where}#{call}",
                "attempts": 1,
                "error": error,
                "data": None,
            }
        )
        if not getattr(state.task, "continue_after_error", False):
            logger.error(
                "task %s stops handing out: %s() raised (set continue_after_error to go on)",
                state.task_type,
                where,
            )
            state.task.is_complete = True
