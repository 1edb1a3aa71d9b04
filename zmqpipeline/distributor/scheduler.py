"""The distributor's decisions, apart from its sockets: which worker gets which item, when
a task is finished, what is retried and what has failed.

A :class:`Scheduler` is fed decoded records and the current time and appends what it
wants sent to :attr:`Scheduler.outbox`; the :class:`~zmqpipeline.distributor.Distributor`
owns the sockets and drains it. Unit tests drive it directly. Its records live in
:mod:`zmqpipeline.distributor.state`, the counts it reports in :mod:`zmqpipeline.distributor.summary`; handing out
work is in :mod:`zmqpipeline.distributor.handout`, liveness and failures in :mod:`zmqpipeline.distributor.liveness`.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from itertools import repeat
from typing import Any

from .. import protocol
from ..journal.run import JournaledRun, RunJournal
from ..runtime.runtime import UserCodeError, call_user
from ..settings import Settings
from ..task import Task
from .handout import HandOut
from .resume import TaskResume, jump_ahead, resume_tasks
from .stages import StageBook, feed, reopen_stages, source_finished
from .state import (
    COLLECTOR,
    Item,
    ItemTimer,
    TaskState,
    WorkerRecord,
    check_dependencies,
    task_size,
)
from .summary import end_summary, run_summary, worker_entry

__all__ = ["COLLECTOR", "Scheduler", "check_dependencies", "task_size"]

logger = logging.getLogger("zmqpipeline.distributor")
task_logger = logging.getLogger("zmqpipeline.task")


_LATENCY_SAMPLES = 10_000
#: The result linger of the workers of a task that feeds a stage: each result is the
#: next stage's input, so it goes on almost at once (the batch still forms by count).
FEEDER_LINGER_S = 0.02
_RATE_WINDOW_S = 10.0  # status shows items/s over this long


class Scheduler(HandOut):
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
        self.collector_id: bytes | None = None
        self.last_tick: float | None = None
        # Every worker seen this run, kept after it leaves (for the report).
        self.worker_log: dict[bytes, dict[str, Any]] = {}
        # Operator control (commands through zmqpipeline.distributor.control): flags dispatch honours,
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
        # Streaming stages and open-ended tasks (see zmqpipeline.distributor.stages).
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

    def _activate_ready_tasks(self) -> None:
        for state in self.tasks.values():
            if state.active or state.finished:
                continue
            if all(self.tasks[dep].finished for dep in state.dependencies):
                state.active = True
                state.size = None if state.task.sources else task_size(state.task)
                logger.info("task %s is active", state.task_type)
                for worker in state.workers.values():
                    self._accept(state, worker)

    def _accept(self, state: TaskState, worker: WorkerRecord) -> None:
        worker.accepted = True
        assert self.metadata is not None
        # A task that feeds a stage wants its results at once, not held for a batch.
        options = (
            {"result_linger_s": FEEDER_LINGER_S} if self.stages.fed.get(state.task_type) else {}
        )
        self.outbox.append(
            (state.endpoint, worker.wid, self.codec.welcome(self.run, self.metadata, options))
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
        # The collector first: its handle_finished ends the user's run, and many workers
        # leaving at once would hold up a collector told after them.
        self.outbox.append((COLLECTOR, None, end))
        for state in self.tasks.values():
            for wid in state.workers:
                self.outbox.append((state.endpoint, wid, end))

    def summary(self, aborted: bool) -> dict[str, Any]:
        """The run's counts so far (see :func:`zmqpipeline.distributor.summary.run_summary`)."""
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
            worker.started_all_at = None if msg.seqs else len(worker.held)
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

    def on_ack(self, groups: list[list[Any]], now: float) -> None:
        # Every item's path once. An ACK comes in groups of one task type and one worker
        # (protocol.ack_group): what a group shares is looked up and counted once.
        touched: dict[str, TaskState] = {}
        self.last_ack_at = now
        latencies, journal = self.latencies, self.journal if self.journal.records else None
        fed = self.stages.fed
        for task_type, executed_by, seqs, ack_data, errors, results, firsts in groups:
            state = self.tasks.get(task_type)
            if state is None:
                self.stale_acks += len(seqs)
                continue
            n = len(seqs)
            rows = zip(
                seqs,
                ack_data or repeat(None, n),
                errors or repeat(None, n),
                results or repeat(None, n),
                firsts or repeat(True, n),
                strict=True,
            )
            in_flight, workers = state.in_flight, state.workers
            worker = workers.get(executed_by)
            waits: list[float] = []  # hand-out to ACK, for the task's time limit
            found = False
            last_data = None
            for seq, data, error, result, first in rows:
                item = in_flight.get(seq)
                if item is None:
                    if error is None:
                        if self._late_ack(state, seq):
                            continue
                        # Collected now, not a duplicate's re-ACK: an item we had failed?
                        if first and self._collected_after_failing(state, seq, executed_by, result):
                            continue
                    self.stale_acks += 1
                    continue
                found = True
                if error is not None:  # handle_collection raised: try the item again
                    self._unassign(state, item)
                    self._retry(state, item, error, now, user_error=True)
                    continue
                del in_flight[seq]
                holder = item.worker
                if holder is not None:  # _unassign, with the lookup above
                    owner = worker if holder == executed_by else workers.get(holder)
                    if owner is not None:
                        owner.held.discard(seq)
                    item.worker = None
                if journal is not None:
                    journal.acked(task_type, seq)
                last_data = data
                waits.append(now - item.sent_at)
                latencies.append(now - item.first_sent_at)
                if result is not None and task_type in fed:
                    feed(self, state, seq, result)  # its first ACK: once per item
            if waits:
                collected = len(waits)
                state.collected += collected
                state.last_ack_data = last_data
                state.held_back = False
                state.timer.observe_all(waits)
                if worker is not None:
                    worker.completed += collected
                log = self.worker_log.get(executed_by)
                if log is not None:
                    log["collected"] += collected
            if found:
                touched[task_type] = state
        for state in touched.values():
            self._check_finished(state)

    def _collected_after_failing(
        self, state: TaskState, seq: Any, executed_by: bytes, result: dict[str, Any] | None
    ) -> bool:
        """The collector collected an item we had failed for good (its result came in
        before our SKIP, over a link that stayed up while ours to the collector was
        down): it is collected, not failed, and the stages it feeds get its result."""
        record = next((f for f in state.failed if f["seq"] == seq), None)
        if record is None:
            return False
        state.failed.remove(record)
        state.collected += 1
        log = self.worker_log.get(executed_by)
        if log is not None:
            log["collected"] += 1
        self.journal.unfailed(record)
        logger.warning(
            "item %s was collected after it had failed for good: counted as collected",
            record["item_id"],
        )
        if result is not None and state.task_type in self.stages.fed and not self.done:
            reopen_stages(self, state.task_type)
            feed(self, state, seq, result)
            if state.finished:
                source_finished(self, state)  # nothing more comes: the stages may complete
        return True

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

    # -- operator control (see zmqpipeline.distributor.control, which checks the command first) ------

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
        self.journal.redriven(entry, item.seq)
        self.redriven[state.task_type] += 1
        state.in_flight[item.seq] = item
        state.retry.append((now, item.seq))
        if state.finished:
            state.finished, state.active = False, True
        reopen_stages(self, state.task_type)  # what its result derives has somewhere to go
        return item.seq
