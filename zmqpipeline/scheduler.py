"""The distributor's decisions, apart from its sockets: which worker gets which item, when
a task is finished, what is retried and what has failed.

A :class:`Scheduler` is fed decoded records and the current time and appends what it
wants sent to :attr:`Scheduler.outbox`; the :class:`~zmqpipeline.distributor.Distributor`
owns the sockets and drains it. Unit tests drive it directly. Its records live in
:mod:`zmqpipeline.state`, the counts it reports in :mod:`zmqpipeline.summary`.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from typing import Any

from . import protocol
from .errors import MessageTooLarge, SerializationError
from .journal import JournaledRun, RunJournal
from .resume import TaskResume, jump_ahead, resume_tasks
from .runtime import UserCodeError, call_user
from .settings import Settings
from .stages import StageBook, feed, source_finished, take
from .state import Item, ItemTimer, TaskState, WorkerRecord, check_dependencies, task_size
from .summary import end_summary, run_summary, worker_entry
from .task import Task
from .utils.messages import MESSAGE_TYPE_DATA

__all__ = ["COLLECTOR", "Scheduler", "check_dependencies", "task_size"]

logger = logging.getLogger("zmqpipeline.distributor")
task_logger = logging.getLogger("zmqpipeline.task")

#: Outbox channel of the socket to the collector (worker channels are task endpoints).
COLLECTOR = "collector"

_LATENCY_SAMPLES = 10_000
_NOTHING = object()  # _call_handle made no item
_RATE_WINDOW_S = 10.0  # status shows items/s over this long


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
                timer=ItemTimer(settings.item_timeout_factor, settings.item_timeout_floor_s),
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
        self.last_tick: float | None = None
        # Every worker seen this run, kept after it leaves (for the report).
        self.worker_log: dict[bytes, dict[str, Any]] = {}
        # Operator control (commands through zmqpipeline.control): flags dispatch honours,
        # and what a status snapshot reads besides the counts above.
        self.paused = False
        self.draining = False
        self.ended_by = ""  # "completed", "drained" or "stopped", once done
        self.last_ack_at: float | None = None
        self.last_hello_at: float | None = None
        self.redriven: Counter[str] = Counter()  # failed items handed out again, per task
        samples = int(_RATE_WINDOW_S / settings.heartbeat_interval_s) + 2
        self.rates: dict[str, deque[tuple[float, int]]] = {  # (time, collected), per tick
            tt: deque(maxlen=samples) for tt in self.tasks
        }
        # Crash recovery (zmqpipeline.journal): what to record, and what a resumed run skips.
        self.journal = RunJournal()
        self.resuming: dict[str, TaskResume] = {}
        # Streaming stages and open-ended tasks (see zmqpipeline.stages).
        self.stages = StageBook(tasks, settings)

    def resume_from(self, journaled: JournaledRun) -> None:
        """Continue the journaled run: finished tasks stay finished, ACKed items are not
        handed out again (call before :meth:`start`)."""
        self.resuming = resume_tasks(self.tasks, journaled)

    # -- run life cycle ---------------------------------------------------------------

    def start(self, metadata: dict[str, Any], now: float) -> None:
        """Metadata is known (``{}`` if none is expected): initialise tasks and begin."""
        self.metadata = metadata
        self.journal.started(metadata)
        for state in self.tasks.values():
            try:
                call_user(task_logger, "Task.initialize", state.task.initialize, metadata)
            except UserCodeError as exc:
                self._handle_raised(state, exc.text, "initialize")
                continue
            if state.task_type in self.resuming:
                try:
                    resume = self.resuming[state.task_type]
                    call_user(task_logger, "Task.resume", jump_ahead, state, resume)
                except UserCodeError as exc:
                    self._handle_raised(state, exc.text, "resume")
        if self.collector_id is not None:
            self._send_start()
        self._activate_ready_tasks()
        self.dispatch(now)

    def _send_start(self) -> None:
        assert self.metadata is not None
        start = self.codec.start(
            self.run, self.metadata, list(self.tasks), self.stages.forward, self.stages.quiet
        )
        self.outbox.append((COLLECTOR, None, start))

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
        if (state.task.is_complete or self.draining) and not state.in_flight:
            state.finished = True
            state.active = False
            self.journal.task_finished(state.task_type)
            self.last_finished = state.task_type
            logger.info(
                "task %s finished: %d collected, %d failed, %d retries",
                state.task_type,
                state.collected,
                len(state.failed),
                state.retries,
            )
            source_finished(self, state)  # the stages it fed may be complete now
            self._activate_ready_tasks()
            if all(s.finished for s in self.tasks.values()) and not self.paused:
                self.finish(aborted=False)  # a paused run is held open (see resume)

    def finish(self, aborted: bool) -> None:
        """End the run: tell every worker and the collector."""
        if self.done:
            return
        self.done = True
        self.ended_by = "stopped" if aborted else "drained" if self.draining else "completed"
        end = self.codec.end(self.run, end_summary(self, aborted))
        for state in self.tasks.values():
            for wid in state.workers:
                self.outbox.append((state.endpoint, wid, end))
        self.outbox.append((COLLECTOR, None, end))

    def summary(self, aborted: bool) -> dict[str, Any]:
        """The run's counts so far (see :func:`zmqpipeline.summary.run_summary`)."""
        return run_summary(self, aborted)

    # -- messages from workers --------------------------------------------------------

    def on_worker_message(self, endpoint: str, wid: bytes, msg: Any, now: float) -> None:
        kind = type(msg)
        if kind is protocol.Ready:
            self._on_ready(endpoint, wid, msg, now)
            return
        if kind is protocol.Heartbeat:
            wid = msg.worker_id  # sent from the worker's heartbeat socket, names the worker
        state = self.workers.get(wid)
        if state is None or state.endpoint != endpoint:
            # Declared dead, or we restarted: tell it to introduce itself again.
            if kind is not protocol.Bye and state is None:
                self.outbox.append((endpoint, wid, self.codec.reset()))
            return
        worker = state.workers[wid]
        worker.last_seen = now
        if kind is protocol.Credit:
            worker.confirmed = worker.accepted
            worker.credit = min(worker.credit + msg.n, worker.capacity)
        elif kind is protocol.Fail:
            self._on_fail(state, worker, msg, now)
        elif kind is protocol.HandBack:
            worker.recalling = False
            for seq in msg.seqs:
                item = state.in_flight.get(seq)
                if item is not None and item.worker == worker.wid:
                    self._unassign(state, item)
                    item.avoid = worker.wid
                    state.retry.appendleft((now, seq))
        elif kind is protocol.Bye:
            # It hands back what it had not started; items sent while its BYE was on the
            # way, and results not yet ACKed, go round again too (the collector dedupes).
            for seq in sorted(worker.held):
                item = state.in_flight.get(seq)
                if item is not None:
                    self._unassign(state, item)
                    state.retry.appendleft((now, seq))
            self._remove_worker(state, worker, reason=None, now=now)

    def _on_ready(self, endpoint: str, wid: bytes, msg: protocol.Ready, now: float) -> None:
        state = self.tasks.get(msg.task_type)
        if state is None or state.endpoint != endpoint:
            if msg.task_type not in self.unknown_task_types:
                self.unknown_task_types.add(msg.task_type)
                logger.warning(
                    "a worker for task type %r connected to %s, but no registered task of "
                    "that type is served there; ignoring it",
                    msg.task_type,
                    endpoint,
                )
            return
        capacity = max(1, min(msg.capacity, self.settings.max_credit))
        free = max(0, min(msg.free, capacity))
        worker = state.workers.get(wid)
        if worker is None:
            other = self.workers.get(wid)
            if other is not None:  # same id, other task type: treat as a new worker
                self._remove_worker(other, other.workers[wid], reason="worker re-joined", now=now)
            worker = WorkerRecord(
                wid, msg.task_type, capacity, free, now, threads=max(1, msg.threads)
            )
            state.workers[wid] = worker
            self.workers[wid] = state
            self.worker_log.setdefault(wid, worker_entry(wid, msg.task_type))
            logger.info(
                "worker %s joined task %s (asks for %d item(s), may hold up to %d)",
                wid.decode(errors="replace"),
                msg.task_type,
                free,
                capacity,
            )
        else:
            worker.capacity, worker.credit, worker.last_seen = capacity, free, now
        worker.threads = max(1, msg.threads)
        if self.done or state.finished:
            self.outbox.append((endpoint, wid, self.codec.end(self.run, end_summary(self, False))))
        elif state.active and self.started:
            self._accept(state, worker)

    def _on_fail(
        self, state: TaskState, worker: WorkerRecord, msg: protocol.Fail, now: float
    ) -> None:
        item = state.in_flight.get(msg.seq)
        if item is None or item.worker != worker.wid:
            return  # already re-issued or collected
        self._unassign(state, item)
        retry_for = state.task.retry_for
        if retry_for is not None:
            names = {n if isinstance(n, str) else n.__name__ for n in retry_for}
            if not names.intersection(msg.exc_types):
                self._fail(state, item, msg.error)
                return
        self._retry(state, item, msg.error, now, user_error=True)

    # -- messages from the collector --------------------------------------------------

    def on_ack(self, entries: list[list[Any]], now: float) -> None:
        touched: set[str] = set()
        self.last_ack_at = now
        for task_type, seq, ack_data, error, executed_by, result in entries:
            state = self.tasks.get(task_type)
            item = state.in_flight.get(seq) if state is not None else None
            if state is None or item is None:
                if state is not None and error is None and self._late_ack(state, seq):
                    continue
                self.stale_acks += 1
                continue
            touched.add(task_type)
            if error is not None:  # handle_collection raised: try the item again
                self._unassign(state, item)
                self._retry(state, item, error, now, user_error=True)
                continue
            del state.in_flight[seq]
            self._unassign(state, item)
            self.journal.acked(task_type, seq)
            worker = state.workers.get(executed_by)
            if worker is not None:
                worker.completed += 1
            if executed_by in self.worker_log:
                self.worker_log[executed_by]["collected"] += 1
            state.collected += 1
            state.last_ack_data = ack_data
            state.held_back = False
            state.timer.observe(now - item.sent_at)
            self.latencies.append(now - item.first_sent_at)
            if result is not None and task_type in self.stages.fed:
                feed(self, state, seq, result)  # its first ACK: once per item
        for task_type in touched:
            self._check_finished(self.tasks[task_type])

    def _late_ack(self, state: TaskState, seq: Any) -> bool:
        """A resumed run: an ACK of an item handed out before the crash and not made
        again yet. Note it as done, so it is skipped when ``handle`` makes it."""
        resume = self.resuming.get(state.task_type)
        if resume is None or not isinstance(seq, int) or seq < state.next_seq:
            return False
        if seq not in resume.done:
            resume.done.add(seq)
            state.collected += 1
            self.journal.acked(state.task_type, seq)
        return True

    def on_collector_hello(self, collector_id: bytes, now: float) -> None:
        """The collector answered a PING. A new one gets START; if it replaces an earlier
        one, the results that one had not ACKed are gone with it: hand them out again."""
        previous, self.collector_id = self.collector_id, collector_id
        self.last_hello_at = now
        if previous == collector_id or self.metadata is None or self.done:
            return
        self._send_start()
        if previous is not None:
            logger.warning("a new collector replaced the old one: re-issuing un-ACKed items")
            for state in self.tasks.values():
                for item in state.in_flight.values():
                    if item.worker is not None:
                        self._unassign(state, item)
                        state.retry.appendleft((now, item.seq))

    # -- time ---------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Declare silent workers dead and re-issue items over their time limit.

        If this process itself was stalled since the last tick, the silence was ours: every
        worker gets that time back before anyone is judged.
        """
        last, self.last_tick = self.last_tick, now
        for task_type, task_state in self.tasks.items():
            self.rates[task_type].append((now, task_state.collected))
        if self.done:
            return  # workers leave as they get END: nothing to re-issue any more
        stalled = 0.0 if last is None else now - last - 2 * self.settings.heartbeat_interval_s
        deadline = now - self.settings.liveness_s
        for state in self.tasks.values():
            for worker in list(state.workers.values()):
                if stalled > 0:
                    worker.last_seen += stalled
                elif worker.last_seen < deadline:
                    self._remove_worker(state, worker, reason="worker died", now=now)
            if state.active:
                self._expire_items(state, now, stalled)

    def _expire_items(self, state: TaskState, now: float, stalled: float) -> None:
        limit = state.task.item_time_limit_s or state.timer.limit_s
        for item in list(state.in_flight.values()):
            if stalled > 0:
                item.sent_at += stalled
            elif item.worker is not None and now - item.sent_at > limit:
                worker = state.workers.get(item.worker)
                if worker is not None:
                    # Its results do not reach the collector (a cut link?): it must earn
                    # trust again before items whose workers failed go to it.
                    worker.completed = 0
                self._unassign(state, item)
                self._retry(state, item, f"no ACK within {limit:.1f} s", now, user_error=False)

    def heartbeats(self) -> None:
        """Tell every worker we are alive, and PING the collector (it answers HELLO)."""
        self.outbox.append((COLLECTOR, None, self.codec.ping(self.run)))
        if self.done:
            return
        beat = self.codec.alive()
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
                self._retry(state, item, reason, now, user_error=False)
        worker.held.clear()

    def _retry(
        self, state: TaskState, item: Item, error: str, now: float, user_error: bool
    ) -> None:
        """Hand ``item`` out again, or fail it when its tries are used up. User-code errors
        and deaths (a worker died, a time limit passed) are counted apart."""
        if user_error:
            item.attempts += 1
            limit = state.task.max_attempts or self.settings.max_attempts
            if item.attempts >= limit:
                self._fail(state, item, error)
                return
            base = state.task.retry_backoff_s
            base = self.settings.retry_backoff_s if base is None else base
            delay = min(base * 2 ** (item.attempts - 1), self.settings.retry_backoff_max_s)
            state.retry.append((now + delay, item.seq))
        else:
            item.deaths += 1
            if item.deaths >= self.settings.max_deaths:
                self._fail(state, item, f"{error} ({item.deaths} times)")
                return
            state.suspect.append(item.seq)
        state.retries += 1

    def _fail(self, state: TaskState, item: Item, error: str) -> None:
        """``item`` failed for good: record it, tell the collector it will not come."""
        del state.in_flight[item.seq]
        state.failed.append(
            record := {
                "task_type": state.task_type,
                "seq": item.seq,
                "item_id": f"{state.task_type}/{item.seq}",
                "attempts": item.attempts,
                "deaths": item.deaths,
                "error": error,
                "data": item.payload,
            }
        )
        self.journal.failed(record)
        logger.error(
            "item %s/%d failed for good (%d error(s), %d death(s)): %s",
            state.task_type,
            item.seq,
            item.attempts,
            item.deaths,
            error.strip().splitlines()[-1:],
        )
        self.outbox.append((COLLECTOR, None, self.codec.skip(self.run, state.task_type, item.seq)))
        self._check_finished(state)

    # -- handing out work ---------------------------------------------------------------

    def dispatch(self, now: float) -> None:
        """Give every confirmed worker with credit as many items as its window allows.

        Nothing goes out before a collector has said HELLO: results would only wait in it.
        """
        if not self.started or self.done or self.collector_id is None or self.paused:
            return
        initial = self.settings.initial_window
        for state in self.tasks.values():
            if not state.active or not state.workers:
                continue
            workers = [w for w in state.workers.values() if w.confirmed and w.credit > 0]
            if not workers:
                continue
            start = state.rotation % len(workers)
            state.rotation += 1
            for worker in workers[start:] + workers[:start]:
                room = min(worker.credit, worker.window(initial) - len(worker.held))
                items = self._take(state, worker, room, now)
                if items:
                    self._send_items(state, worker, items, now)
                elif room > 0 and not state.suspect and not state.retry:
                    break  # nothing more to hand out to anyone
            self._rebalance(state)
            self._check_finished(state)

    def _rebalance(self, state: TaskState) -> None:
        """A fair tail: once the task makes no new items, a worker with idle threads
        while another holds items it has not started asks that one (RECALL) to hand some
        back, so the last items do not queue behind one worker while another waits."""
        if not state.task.is_complete or state.retry or state.suspect:
            return
        workers = [w for w in state.workers.values() if w.confirmed]
        idle = sum(max(0, w.threads - len(w.held)) for w in workers if w.credit > 0)
        if not idle:
            return
        busiest = max(workers, key=lambda w: len(w.held) - w.threads)
        queued = len(busiest.held) - busiest.threads
        if queued > 0 and not busiest.recalling:
            busiest.recalling = True
            n = min(queued, idle)
            self.outbox.append((state.endpoint, busiest.wid, self.codec.recall(n)))

    def _take(self, state: TaskState, worker: WorkerRecord, room: int, now: float) -> list[Any]:
        items: list[list[Any]] = []
        while room > 0:
            item = self._next_item(state, worker, now)
            if item is None:
                break
            item.worker = worker.wid
            item.sent_at = now
            worker.held.add(item.seq)
            worker.credit -= 1
            room -= 1
            self.handed_out[worker.wid] += 1
            self.worker_log[worker.wid]["handed_out"] += 1
            items.append([item.seq, item.payload])
        return items

    def _send_items(
        self, state: TaskState, worker: WorkerRecord, items: list[list[Any]], now: float
    ) -> None:
        """Send a batch; if it would not pack, send its items singly and fail those that
        cannot go at all (a value msgpack cannot carry, or too big): retrying won't help."""
        try:
            self.outbox.append(
                (state.endpoint, worker.wid, self.codec.data(self.run, items, state.task_type))
            )
            return
        except (SerializationError, MessageTooLarge):
            pass
        for seq, payload in items:
            try:
                frames = self.codec.data(self.run, [[seq, payload]], state.task_type)
            except (SerializationError, MessageTooLarge) as exc:
                item = state.in_flight[seq]
                self._unassign(state, item)
                worker.credit += 1
                self._fail(state, item, str(exc))
            else:
                self.outbox.append((state.endpoint, worker.wid, frames))

    def _next_item(self, state: TaskState, worker: WorkerRecord, now: float) -> Item | None:
        # Items whose workers died go first, but only to a worker that has completed
        # items (if the task has one): a peer that takes items and vanishes gets new
        # ones, never the same ones again and again.
        if state.suspect and (worker.completed or not _any_proven(state)):
            while state.suspect:
                item = state.in_flight.get(state.suspect.popleft())
                if item is not None and item.worker is None:
                    return item
        while state.retry and state.retry[0][0] <= now:
            item = state.in_flight.get(state.retry[0][1])
            if item is not None and item.avoid == worker.wid and len(state.workers) > 1:
                return None  # it handed this one back: another worker takes it
            state.retry.popleft()
            if item is not None and item.worker is None:
                return item
        return self._new_item(state, worker.wid, now)

    def _new_item(self, state: TaskState, wid: bytes, now: float) -> Item | None:
        task = state.task
        if task.is_complete or state.held_back or self.draining:
            return None
        if len(state.in_flight) >= self.settings.max_in_flight:
            return None
        if self.stages.blocked(state.task_type, len(state.in_flight)):
            return None  # backpressure: a stage it feeds has a full backlog
        try:
            available = call_user(
                task_logger,
                "Task.is_available_for_handling",
                task.is_available_for_handling,
                state.last_ack_data,
            )
            if not available:
                state.held_back = True
                return None
        except UserCodeError as exc:
            self._handle_raised(state, exc.text, "is_available_for_handling")
            return None
        if self.stages.feeds_from_backlog(state.task_type):
            payload = take(self, state)  # a stage or an open-ended task
            if payload is None:
                return None
        else:
            made = self._call_handle(state, wid)
            if made is _NOTHING:
                return None
            payload = made
        if payload is None:
            payload = {}
        elif not isinstance(payload, dict):
            error = (
                f"TypeError: {type(task).__name__}.handle() must return a dict or None, "
                f"not {type(payload).__name__}"
            )
            self._handle_raised(state, error, "handle")
            return None
        item = Item(state.next_seq, payload, first_sent_at=now)
        state.next_seq += 1
        state.in_flight[item.seq] = item
        self.journal.handed_out(state.task_type, item.seq)
        return item

    # -- operator control (see zmqpipeline.control, which checks the command first) ------

    def resume(self, now: float) -> None:
        """Hand out again after a pause; a run whose tasks all finished meanwhile ends."""
        self.paused = False
        if all(s.finished for s in self.tasks.values()):
            self.finish(aborted=False)
        else:
            self.dispatch(now)

    def drain(self, now: float) -> None:
        """Hand out nothing new (retries of items in flight still go out, so a pause
        ends too); end the run once nothing is in flight. Tasks not started yet never
        start: all their items count as not handed out."""
        self.draining, self.paused = True, False
        for state in self.tasks.values():
            if not state.active:
                state.finished = True
        for state in self.tasks.values():
            self._check_finished(state)
        if all(s.finished for s in self.tasks.values()):
            self.finish(aborted=False)
        else:
            self.dispatch(now)

    def redrive(self, state: TaskState, entry: dict[str, Any], now: float) -> int:
        """Hand an item that failed for good out again, as a dead-letter queue is
        re-driven; returns its new seq. A new seq, because the collector has counted the
        old one as skipped (see docs/guides/operating.md). A finished task is reopened."""
        state.failed.remove(entry)
        item = Item(state.next_seq, entry["data"], first_sent_at=now)
        state.next_seq += 1
        self.redriven[state.task_type] += 1
        state.in_flight[item.seq] = item
        state.retry.append((now, item.seq))
        if state.finished:
            state.finished, state.active = False, True
        return item.seq

    def _call_handle(self, state: TaskState, wid: bytes) -> Any:
        """The task's next item from ``handle`` (``_NOTHING`` if it raised, or if a resumed
        run has nothing left to make). Items collected before a crash are made again and
        skipped, not sent."""
        task = state.task
        resume = self.resuming.get(state.task_type)
        while True:
            try:
                payload = call_user(
                    task_logger,
                    "Task.handle",
                    task.handle,
                    self.metadata or {},
                    wid,
                    MESSAGE_TYPE_DATA,
                )
            except UserCodeError as exc:
                self._handle_raised(state, exc.text, "handle")
                return _NOTHING
            if resume is None or not resume.skip(state.next_seq):
                return payload
            state.next_seq += 1  # collected before the crash: made again, not sent
            if task.is_complete:
                return _NOTHING

    def _handle_raised(self, state: TaskState, error: str, where: str) -> None:
        """User code in the task raised: a reported failure. By default the task hands
        out nothing more (``Task.continue_after_error`` chooses to go on)."""
        state.handle_errors += 1
        call = state.next_seq + state.handle_errors
        state.failed.append(
            record := {
                "task_type": state.task_type,
                "seq": None,
                "item_id": f"{state.task_type}/{where}#{call}",
                "attempts": 1,
                "deaths": 0,
                "error": error,
                "data": None,
            }
        )
        self.journal.failed(record)
        if not state.task.continue_after_error:
            logger.error(
                "task %s stops handing out: %s() failed on call %d "
                "(set continue_after_error to go on)",
                state.task_type,
                where,
                call,
            )
            state.task.is_complete = True


def _any_proven(state: TaskState) -> bool:
    return any(w.completed and w.credit > 0 for w in state.workers.values())
