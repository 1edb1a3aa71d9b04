"""``Recurring``: the scheduled tasks' part of the distributor's
:class:`~zmqpipeline.distributor.scheduler.Scheduler`, between its item paths and the
:class:`~zmqpipeline.schedule.book.JobBook` of each scheduled task (:mod:`zmqpipeline.schedule`).

- due jobs go into their task's backlog (the one pushed items wait in, see
  :mod:`.stages`) as ``{"job", "data", "due"}`` items;
- a scheduled task's results ride on their ACK (START's ``forward`` list, as the
  results that feed a stage): the ACK tells the book how the run went (ok, backoff);
- a FAIL whose exception is ``StopJob`` or ``UnsetJob`` ends the run as the job asked
  (the item counts as collected, the collector is told to skip it); any other FAIL
  follows the task's retry policy, and a failure for good
  (:meth:`.failures.Failures.item_failed`) ends the run as
  ``failed``;
- a run with no outcome within its job's timeout fails for good as ``timed out``.

Times: the scheduler's ``now`` is :func:`time.monotonic`; rules need the wall clock,
read from :attr:`Recurring.clock` (:func:`time.time`; tests hold their own).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..schedule.outcomes import Outcome, outcome_of_result, signal_of
from .state import COLLECTOR, Item, SchedulerPart, TaskState

if TYPE_CHECKING:
    from ..protocol import Fail
    from ..schedule.book import JobBook
    from ..schedule.store import ScheduleStore
    from ..schedule.task import Schedule
    from ..task import Task
    from .scheduler import Scheduler

__all__ = ["LISTED_JOBS", "Recurring", "job_of"]

logger = logging.getLogger("zmqpipeline.schedule")
#: The jobs the status lists per scheduled task (the dashboard's table), of any number.
LISTED_JOBS = 100
_UNKNOWN = "outcome not known: its result had been collected before the distributor restarted"


def job_of(payload: Any) -> str | None:
    """The job id of a scheduled task's item (``None``: an item pushed in)."""
    job = payload.get("job") if isinstance(payload, dict) else None
    return job if isinstance(job, str) else None


def _schedules(tasks: list[Task]) -> dict[str, Schedule]:
    """The schedule of each scheduled task of ``tasks``. A run with none never imports
    the jobs' books, rules and store (nor SQLite): a :class:`ScheduledTask` cannot exist
    unless its module has been imported."""
    module = sys.modules.get("zmqpipeline.schedule.task")
    if module is None:
        return {}
    return {t.task_type: type(t).schedule for t in tasks if isinstance(t, module.ScheduledTask)}


def _last_line(error: str) -> str:
    return (error.strip().splitlines() or [""])[-1][:500]


class Recurring(SchedulerPart):
    """The jobs of every scheduled task of the run (see the module's docstring)."""

    def __init__(self, scheduler: Scheduler, tasks: list[Task]) -> None:
        super().__init__(scheduler)
        #: The wall clock the rules are read against.
        self.clock: Callable[[], float] = time.time
        self.schedules = _schedules(tasks)
        self.books: dict[str, JobBook] = {}
        #: Task types whose results the collector puts on their ACK.
        self.forward = sorted(self.schedules)
        self.path: str | None = None
        self.store: ScheduleStore | None = None
        self._worker_of: dict[tuple[str, int], bytes] = {}  # the last to FAIL each item
        self._timed_out: set[tuple[str, int]] = set()
        self._now = 0.0  # the latest monotonic time the scheduler gave us

    def open(self, journal: str | os.PathLike[str] | None) -> None:
        """Keep the schedule beside the distributor journal ``journal`` (``None``: in
        memory, forgotten at the end). Call before the run starts."""
        if journal is not None and self.schedules:
            from ..schedule.store import store_path

            self.path = store_path(journal)
        else:
            self.path = None

    def start(self, now: float) -> None:
        """The run starts (or resumes): load every book, set the jobs the code gives."""
        if not self.schedules:
            return
        from ..schedule.book import JobBook
        from ..schedule.rules import zone
        from ..schedule.store import ScheduleStore

        self.store = ScheduleStore(self.path, max(s.history for s in self.schedules.values()))
        wall = self.clock()
        for task_type, schedule in self.schedules.items():
            state = self.s.tasks[task_type]
            resume = self.s.resuming.get(task_type)
            if resume is not None:  # seqs handed out before the restart are not made again
                state.next_seq = max(state.next_seq, resume.limit)
            book = JobBook(task_type, schedule, self.store, zone(schedule.timezone))
            self.books[task_type] = book
            try:
                book.load(wall)
            except (OSError, ValueError) as exc:  # its CSV
                self.s.failures.task_code_failed(state, f"schedule: {exc}", "schedule")
                continue
            logger.info("task %s: %d job(s) scheduled", task_type, len(book.jobs))
            self._maybe_idle(book)
        self.store.commit()

    def close(self) -> None:
        """The run is over: write what is buffered."""
        if self.store is not None:
            self.store.close()
            self.store = None

    # -- time ---------------------------------------------------------------------------

    def release(self, now: float) -> None:
        """Put the jobs due now into their tasks' backlogs (called before each dispatch)."""
        self._now = now
        wall = None
        for task_type, book in self.books.items():
            when = book.next_due_at()
            if when is None:
                continue
            wall = self.clock() if wall is None else wall
            state = self.s.tasks[task_type]
            if when > wall or state.finished or state.task.is_complete or self.s.draining:
                continue
            jobs = [
                {"job": job.job, "data": job.data, "due": due} for due, job in book.pop_due(wall)
            ]
            # the schedule's store remakes due jobs after a crash: only their seqs journaled
            self.s.stages.enter(state, jobs, journaled=False)
        if self.store is not None:
            self.store.maybe_commit(now)

    def next_wakeup(self, now: float) -> float | None:
        """When (``now``'s clock) the next job is due, ``None`` if none is."""
        times = [t for b in self.books.values() if (t := b.next_due_at()) is not None]
        if not times:
            return None
        return now + max(0.0, min(times) - self.clock())

    def tick(self, now: float) -> None:
        """Runs over their job's timeout fail for good, as ``timed out``."""
        self._now = now
        for task_type, book in self.books.items():
            state = self.s.tasks[task_type]
            for item in list(state.in_flight.values()):
                job = job_of(item.payload)
                if job is None or item.worker is None:
                    continue
                limit = book.timeout_of(job)
                if now - item.sent_at > limit:
                    key = (task_type, item.seq)
                    self._timed_out.add(key)
                    self._worker_of[key] = item.worker
                    state.unassign(item)
                    self.s.failures.item_failed(
                        state, item, f"timed out: no outcome in {limit:g} s"
                    )
        if self.store is not None:
            self.store.maybe_commit(now)

    # -- outcomes (the hooks in acks.py, scheduler.py and failures.py) -------------------

    def ran(
        self, state: TaskState, item: Item, result: dict[str, Any] | None, by: bytes, now: float
    ) -> None:
        """The collector ACKed a scheduled task's item; ``result`` rode on the ACK
        (``None``: a result it had collected before the distributor restarted)."""
        job = job_of(item.payload)
        book = self.books.get(state.task_type)
        if job is None or book is None:
            return
        self._worker_of.pop((state.task_type, item.seq), None)
        outcome = Outcome("ok", error=_UNKNOWN) if result is None else outcome_of_result(result)
        self._end(book, job, outcome, item, by, now)

    def signalled(self, state: TaskState, item: Item, msg: Fail, by: bytes, now: float) -> bool:
        """A FAIL of a scheduled task's item (``item`` unassigned already): ``True`` if
        it was ``StopJob`` or ``UnsetJob``, which ends the run as the job asked."""
        job = job_of(item.payload)
        book = self.books.get(state.task_type)
        if job is None or book is None:
            return False
        kind = signal_of(msg.exc_types)
        if kind is None:  # an error: the retry policy decides; remember who ran it
            self._worker_of[(state.task_type, item.seq)] = by
            return False
        s = self.s
        self._worker_of.pop((state.task_type, item.seq), None)
        del state.in_flight[item.seq]
        s.outbox.append((COLLECTOR, None, s.codec.skip(s.run, state.task_type, item.seq)))
        state.collected += 1  # it ended as its job asked: an outcome, not a failure
        s.journal.acked(state.task_type, item.seq)
        self._end(book, job, Outcome(kind), item, by, now, note=_last_line(msg.error))
        s.check_finished(state)
        return True

    def failed(self, state: TaskState, item: Item, error: str) -> None:
        """A scheduled task's item failed for good (its tries used up, or timed out)."""
        job = job_of(item.payload)
        book = self.books.get(state.task_type)
        if job is None or book is None:
            return
        key = (state.task_type, item.seq)
        kind = "timed out" if key in self._timed_out else "failed"
        self._timed_out.discard(key)
        by = self._worker_of.pop(key, b"")
        now = max(self._now, item.sent_at)  # Failures.item_failed is not given the time
        self._end(book, job, Outcome(kind, error=_last_line(error)), item, by, now)

    def _end(
        self,
        book: JobBook,
        job: str,
        outcome: Outcome,
        item: Item,
        by: bytes,
        now: float,
        note: str = "",
    ) -> None:
        from ..schedule.store import Run

        wall = self.clock()
        took = max(0.0, now - item.sent_at) if item.sent_at else 0.0
        entry = self.s.worker_log.get(by) if by else None
        worker = entry["id"] if entry else by.decode(errors="replace")
        run = Run(wall - took, worker, took, outcome.kind, outcome.error or note)
        if book.ended(job, outcome, wall, run) is not None:
            self._maybe_idle(book)

    def _maybe_idle(self, book: JobBook) -> None:
        """``end_when_idle``: no job will be due again and none runs: close the stream."""
        if book.schedule.end_when_idle and book.idle():
            try:
                self.s.stages.close_stream(book.task_type)
            except ValueError:
                pass  # closed already, or the run is ending anyway
            else:
                logger.info("task %s: no job is due any more: it completes", book.task_type)

    # -- what operators see -------------------------------------------------------------

    def live(self, task_type: str, now: float) -> dict[str, dict[str, Any]]:
        """The jobs of ``task_type`` handed out now: job -> ``{"worker", "since"}``."""
        s, wall, mono = self.s, self.clock(), now
        out: dict[str, dict[str, Any]] = {}
        for item in s.tasks[task_type].in_flight.values():
            job = job_of(item.payload)
            if job is not None and item.worker is not None:
                entry = s.worker_log.get(item.worker)
                worker = entry["id"] if entry else item.worker.decode(errors="replace")
                out[job] = {"worker": worker, "since": wall - (mono - item.sent_at)}
        return out

    def upcoming(self, now: float, limit: int = 10) -> dict[str, Any]:
        """Per scheduled task (``now``: the scheduler's time): its jobs, those running,
        the next ``limit`` due, and the first :data:`LISTED_JOBS` as the dashboard lists
        them (:meth:`~zmqpipeline.schedule.book.JobBook.listing`)."""
        return {
            task_type: {
                "jobs": sum(1 for j in book.jobs.values() if not j.removed),
                "running": sum(1 for j in book.jobs.values() if j.running),
                "next": [{"job": job, "at": when} for when, job in book.upcoming(limit)],
                "list": book.listing(LISTED_JOBS, self.live(task_type, now)),
            }
            for task_type, book in self.books.items()
        }
