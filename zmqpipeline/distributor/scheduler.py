"""The distributor's decisions, apart from its sockets: which worker gets which item, when
a task is finished, what is retried and what has failed.

A :class:`Scheduler` is fed decoded records and the current time and appends what it
wants sent to :attr:`Scheduler.outbox`; the :class:`~zmqpipeline.distributor.Distributor`
owns the sockets and drains it. Unit tests drive it directly.

It holds the run's state and is built of one part per concern, each holding it back:
:class:`~.handout.HandOut` (who gets which item), :class:`~.acks.Acks` (what the
collector confirmed), :class:`~.liveness.Liveness` (silent workers, time limits, retries),
:class:`~.failures.Failures` (failures for good, reported and journaled) and
:class:`~.stages.StageBook` (streaming stages and open-ended tasks). Its records live in
:mod:`.state`, the counts it reports in :mod:`.summary`.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from typing import Any

from .. import protocol
from ..cache.nocache import NoCache
from ..journal.run import JournaledRun, RunJournal
from ..runtime.runtime import UserCodeError, call_user
from ..settings import Settings
from ..task import Task
from .acks import Acks
from .failures import NOT_RETRYABLE, Failures
from .handout import HandOut
from .liveness import Liveness
from .recurring import Recurring
from .resume import TaskResume, jump_ahead, resume_tasks
from .stages import StageBook
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
        self.told_end: set[bytes] = set()  # the workers sent END
        self.outbox: list[tuple[str, bytes | None, list[bytes]]] = []
        self.codec = protocol.Codec(settings.max_message_bytes)
        # Each item handed out carries a token the collector checks (a key per run).
        self.tokens = protocol.ItemTokens(protocol.new_key())
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
        # Operator control (commands through .control): flags dispatch honours,
        # and what a status snapshot reads besides the counts above.
        self.paused = False
        self.draining = False
        self.ended_by = ""  # "completed", "drained" or "stopped", once done
        self.last_ack_at: float | None = None
        self.last_hello_at: float | None = None
        # Failed items handed out again, per task (a resumed task's re-drives under the
        # seqs its first part handed out are in its TaskResume's redriven instead).
        self.redriven: Counter[str] = Counter()
        samples = int(_RATE_WINDOW_S / settings.heartbeat_interval_s) + 2
        self.rates: dict[str, deque[tuple[float, int]]] = {  # (time, collected), per tick
            tt: deque(maxlen=samples) for tt in self.tasks
        }
        # Crash recovery (zmqpipeline.journal): what to record, and what a resumed run skips.
        self.journal = RunJournal()
        self.resuming: dict[str, TaskResume] = {}
        self.cache: NoCache = NoCache()  # the result cache: the distributor opens it
        self.collected_before: dict[str, int] = {}  # resumed: collected by earlier parts
        # The parts, one per concern (see the module's docstring).
        self.stages = StageBook(self, tasks)
        self.handout = HandOut(self)
        self.acks = Acks(self)
        self.liveness = Liveness(self)
        self.failures = Failures(self)
        # Scheduled tasks (zmqpipeline.schedule): their results ride on the ACK too.
        self.recurring = Recurring(self, tasks)
        self.stages.forward = sorted({*self.stages.forward, *self.recurring.forward})

    @property
    def started(self) -> bool:
        return self.metadata is not None

    # -- what the distributor's loop calls, answered by the parts ---------------------

    def dispatch(self, now: float, newcomers_first: bool = False) -> bool:
        """Hand out what the workers have room for (see :meth:`HandOut.dispatch`)."""
        if self.recurring.books:  # due jobs into their backlogs first (.recurring)
            self.recurring.release(now)
        return self.handout.dispatch(now, newcomers_first)

    def on_ack(self, groups: list[list[Any]], now: float) -> None:
        """The collector confirmed these items (see :meth:`Acks.on_ack`)."""
        self.acks.on_ack(groups, now)

    def tick(self, now: float) -> None:
        """Judge silent workers and overdue items (see :meth:`Liveness.tick`)."""
        self.liveness.tick(now)
        if self.recurring.books:  # runs over their job's timeout (.recurring)
            self.recurring.tick(now)

    def heartbeats(self) -> None:
        self.liveness.heartbeats()

    def worker_unreachable(self, wid: bytes, now: float) -> None:
        self.liveness.worker_unreachable(wid, now)

    def next_wakeup(self, now: float) -> float | None:
        """Earliest time a delayed retry (or a scheduled job) is due (``None``: none)."""
        due = (self.liveness.next_wakeup(), self.recurring.next_wakeup(now))
        times = [t for t in due if t is not None]
        return min(times) if times else None

    def commit_journal(self, now: float) -> None:
        """Commit the journal if due. One that cannot be written (a full disk) stops the
        run, saying so in one line; what it had committed stays, and a restart (with
        space) goes on from there."""
        self.journal.maybe_commit(now)
        if self.journal.broken is not None and not self.done:
            logger.error(
                "%s: stopping the run (what was journaled is kept: run again once it can "
                "be written, and the run goes on from there)",
                self.journal.broken,
            )
            self.finish(aborted=True)

    def resume_from(self, journaled: JournaledRun) -> None:
        """Continue the journaled run: finished tasks stay finished, ACKed items are not
        handed out again (call before :meth:`start`)."""
        self.resuming = resume_tasks(self.tasks, journaled)
        self.stages.restore(journaled.backlog, journaled.closed)
        self.collected_before = {tt: s.collected for tt, s in self.tasks.items()}
        for record, _ in journaled.redrives:  # a finished task's re-drives: counted here
            if record["task_type"] in self.tasks and record["task_type"] not in self.resuming:
                self.redriven[record["task_type"]] += 1

    # -- run life cycle ---------------------------------------------------------------

    def start(self, metadata: dict[str, Any], now: float) -> None:
        """Metadata is known (``{}`` if none is expected): initialise tasks and begin."""
        self.metadata = metadata
        self.journal.started(metadata)
        for state in self.tasks.values():
            try:
                call_user(task_logger, "Task.initialize", state.task.initialize, metadata)
            except UserCodeError as exc:
                self.failures.task_code_failed(state, exc.text, "initialize")
                continue
            if state.task_type in self.resuming:
                try:
                    resume = self.resuming[state.task_type]
                    call_user(task_logger, "Task.resume", jump_ahead, state, resume)
                except UserCodeError as exc:
                    self.failures.task_code_failed(state, exc.text, "resume")
        self.recurring.start(now)  # scheduled tasks load their jobs (.recurring)
        if self.collector_id is not None:
            self._send_start()
        self._activate_ready_tasks()
        for state in self.tasks.values():  # a resumed run: sources finished before it
            if state.finished:
                self.stages.source_finished(state)
        if all(s.finished for s in self.tasks.values()):
            self.finish(aborted=False)  # resumed after its last task finished: it ends
        self.dispatch(now)

    def _send_start(self) -> None:
        assert self.metadata is not None
        # The collector forwards the results of stages' sources, and of cached tasks:
        # the distributor stores those (zmqpipeline.cache).
        forward = sorted({*self.stages.forward, *self.cache.task_types})
        start = self.codec.start(
            self.run, self.metadata, list(self.tasks), forward, self.stages.quiet, self.tokens.key
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
        if state.task_type in self.recurring.schedules:  # a job's outcome, at once
            options = {"result_linger_s": 0.0}
        self.outbox.append(
            (state.endpoint, worker.wid, self.codec.welcome(self.run, self.metadata, options))
        )

    def check_finished(self, state: TaskState) -> None:
        """Finish ``state`` if it is complete and nothing of it is in flight."""
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
            self.stages.source_finished(state)  # the stages it fed may be complete now
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
                self.told_end.add(wid)

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
            self.liveness.hand_back(state, msg.seqs, now, avoid=worker.wid)
        elif kind is protocol.Bye:
            # It hands back what it had not started; items sent while its BYE was on the
            # way, and results not yet ACKed, go round again too (the collector dedupes).
            self.liveness.hand_back(state, sorted(worker.held), now, avoid=None)
            self.liveness.remove_worker(state, worker, reason=None, now=now)

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
                self.liveness.remove_worker(
                    other, other.workers[wid], reason="worker re-joined", now=now
                )
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
            self.told_end.add(wid)
        elif state.active and self.started:
            self._accept(state, worker)

    def _on_fail(
        self, state: TaskState, worker: WorkerRecord, msg: protocol.Fail, now: float
    ) -> None:
        item = state.in_flight.get(msg.seq)
        if item is None or item.worker != worker.wid:
            return  # already re-issued or collected
        state.unassign(item)
        if self.recurring.signalled(state, item, msg, worker.wid, now):
            return  # StopJob, UnsetJob: the job's outcome, not a failure (.recurring)
        if NOT_RETRYABLE.intersection(msg.exc_types):  # no retry can mend it
            self.failures.item_failed(state, item, msg.error)
            return
        retry_for = state.task.retry_for
        if retry_for is not None:
            names = {n if isinstance(n, str) else n.__name__ for n in retry_for}
            if not names.intersection(msg.exc_types):
                self.failures.item_failed(state, item, msg.error)
                return
        self.liveness.retry(state, item, msg.error, now, user_error=True)

    # -- the collector ----------------------------------------------------------------

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
                held = [seq for seq, item in state.in_flight.items() if item.worker is not None]
                self.liveness.hand_back(state, held, now, avoid=None)

    # -- operator control (see .control, which checks the command first) --------------

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
            self.check_finished(state)
        if all(s.finished for s in self.tasks.values()):
            self.finish(aborted=False)
        else:
            self.dispatch(now)

    def redrive(self, state: TaskState, entry: dict[str, Any], now: float) -> int:
        """Hand an item that failed for good out again, as a dead-letter queue is
        re-driven; returns its new seq. A new seq, because the collector has counted the
        old one as skipped (see docs/guides/operating.md). A finished task is reopened."""
        state.failed.remove(entry)
        resume = self.resuming.get(state.task_type)
        if resume is not None and state.next_seq < resume.limit:
            # Resumed, and handle() has yet to make again seqs handed out before the
            # crash: take the first seq above them all, which handle() will skip.
            seq = resume.limit
            resume.limit = seq + 1
            resume.redriven = resume.redriven | {seq}  # counted there, not in .redriven
        else:
            seq = state.next_seq
            state.next_seq += 1
            self.redriven[state.task_type] += 1
        item = Item(seq, entry["data"], first_sent_at=now)
        self.journal.redriven(entry, item.seq)
        state.in_flight[item.seq] = item
        state.retry.append((now, item.seq))
        if state.finished:
            state.finished, state.active = False, True
        self.stages.reopen(state.task_type)  # what its result derives has somewhere to go
        return item.seq
