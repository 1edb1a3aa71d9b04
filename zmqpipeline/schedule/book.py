"""``JobBook``: every decision about the jobs of one scheduled task, with no socket and no
clock of its own (it is given the time, seconds since the epoch: tests hold the clock).

Which jobs are due (a heap of next-run times), never a job again while its previous run
is in flight (a job is out of the heap from the moment it is due until its outcome is
known), what each outcome does to the job, and what is kept of it
(:class:`~zmqpipeline.schedule.store.ScheduleStore`).

A job's life, by its status:

=============  ======================================================  ===============
status         when                                                    due next
=============  ======================================================  ===============
scheduled      set, or a run went well and the rule has a next time    the rule's next
queued         due: waiting for a worker (``running`` once handed out)  --
backoff        the worker returned ``Backoff(s)``                      the rule's first
                                                                       time >= end + s
done           the rule has no time left (``NOW``, ``AT``, ``COUNT``)  never
stopped        the worker raised ``StopJob`` (the rule becomes STOP)   never
failed         the run failed for good (its tries used up)             never [#]_
timed out      no outcome within the job's timeout                     never [#]_
bad rule       the rule could not be parsed                            never
unset          removed (``UnsetJob``, ``schedule unset``)              never
=============  ======================================================  ===============

.. [#] The rule's next time with ``Schedule(reschedule_on_error=True)``.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import deque
from datetime import tzinfo
from typing import Any

from .outcomes import Outcome
from .rules import BadRule, Rule, parse_rule
from .store import Job, Run, ScheduleStore
from .task import Schedule

__all__ = ["STATUSES", "JobBook"]

logger = logging.getLogger("zmqpipeline.schedule")

STATUSES = (
    "scheduled",
    "queued",
    "running",
    "backoff",
    "done",
    "stopped",
    "failed",
    "timed out",
    "bad rule",
    "unset",
)
_STOP = Rule("STOP", "STOP")


class JobBook:
    """The jobs of one scheduled task (see the module's docstring)."""

    def __init__(
        self, task_type: str, schedule: Schedule, store: ScheduleStore, tz: tzinfo
    ) -> None:
        self.task_type = task_type
        self.schedule = schedule
        self.store = store
        self.tz = tz
        self.jobs: dict[str, Job] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._pushes = 0
        self.runs = 0  # outcomes recorded

    # -- loading and setting ------------------------------------------------------------

    def load(self, now: float) -> None:
        """Take every job the store holds. A job that was queued or running when the
        distributor stopped, and one whose next run has passed, is due now: once, however
        many of its times were missed."""
        for job in self.store.load(self.task_type):
            job.history = deque(job.history, maxlen=self.schedule.history)
            self.jobs[job.job] = job
            if job.removed:
                continue
            self._parse(job, now)
            if job.running:
                job.running, job.next_run = False, now
                self._status(job, "scheduled", now)
            if job.next_run is not None:
                self._push(job)
        for job_id, (rule, data) in self.schedule.initial_jobs().items():
            known = self.jobs.get(job_id)
            if known is None or known.origin_rule != rule:
                self.set(job_id, rule, data, now)
                self.jobs[job_id].origin_rule = rule
                self.store.save(self.jobs[job_id])

    def set(
        self,
        job_id: str,
        rule: str,
        data: dict[str, Any] | None,
        now: float,
        after: float | None = None,
        timeout_s: float | None = None,
    ) -> Job:
        """Set (or replace) a job's rule; its first run is the rule's first time at or
        after ``after`` (default ``now``). A job running now keeps running: its outcome
        finds the new rule. A bad rule is recorded as such (status ``bad rule``)."""
        exact = now if after is None else after
        # An RRULE counts from a whole second (dateutil drops fractions): the next one, so
        # that its first time has not passed already (a job is never late at its birth).
        start = math.ceil(exact)
        job = self.jobs.get(job_id)
        if job is None:
            job = Job(self.task_type, job_id, rule, {}, start, None, None, "scheduled", now)
            job.history = deque(maxlen=self.schedule.history)
            self.jobs[job_id] = job
        job.rule, job.start, job.removed, job.last_error = rule, start, False, ""
        if data is not None:
            job.data = data
        if timeout_s is not None:
            job.timeout_s = timeout_s
        job.next_run = None
        if self._parse(job, now) is not None and not job.running:
            self._schedule_first(job, exact, now)
        elif job.running:
            self._status(job, "running", now)
        self.store.save(job)
        return job

    def unset(self, job_id: str, now: float) -> bool:
        """Remove a job (``False``: no such job). A run in flight finishes; nothing follows."""
        job = self.jobs.get(job_id)
        if job is None or job.removed:
            return False
        job.removed, job.next_run = True, None
        self._status(job, "unset", now)
        self.store.save(job)
        return True

    def _parse(self, job: Job, now: float) -> Rule | None:
        try:
            job.parsed = parse_rule(job.rule, job.start, self.tz)
        except BadRule as exc:
            job.parsed, job.next_run, job.last_error = None, None, str(exc)
            self._status(job, "bad rule", now)
            logger.error("task %s, job %s: %s", self.task_type, job.job, exc)
        return job.parsed

    def _schedule_first(self, job: Job, start: float, now: float) -> None:
        assert job.parsed is not None
        job.next_run = job.parsed.first(start)
        if job.next_run is not None:
            self._status(job, "scheduled", now)
        else:
            self._status(job, "stopped" if job.parsed.kind == "STOP" else "done", now)
        self._push(job)

    # -- due jobs -------------------------------------------------------------------------

    def _push(self, job: Job) -> None:
        if job.next_run is not None:
            self._pushes += 1
            heapq.heappush(self._heap, (job.next_run, self._pushes, job.job))

    def next_due_at(self) -> float | None:
        """When the next job is due (``None``: none is)."""
        heap = self._heap
        while heap:
            when, _, job_id = heap[0]
            job = self.jobs.get(job_id)
            if job is not None and not job.removed and not job.running and job.next_run == when:
                return when
            heapq.heappop(heap)  # superseded: set again, unset, or already taken
        return None

    def pop_due(self, now: float) -> list[tuple[float, Job]]:
        """The jobs due at ``now`` with the time each was due, earliest first; each is
        queued (in flight) from now until its outcome is known."""
        due: list[tuple[float, Job]] = []
        while True:
            when = self.next_due_at()
            if when is None or when > now:
                return due
            _, _, job_id = heapq.heappop(self._heap)
            job = self.jobs[job_id]
            job.running, job.next_run = True, None
            self._status(job, "queued", now)
            self.store.save(job)
            due.append((when, job))

    def timeout_of(self, job_id: str) -> float:
        job = self.jobs.get(job_id)
        if job is not None and job.timeout_s is not None:
            return job.timeout_s
        return self.schedule.timeout_s

    def idle(self) -> bool:
        """No job is due ever again and none is running."""
        return self.next_due_at() is None and not any(j.running for j in self.jobs.values())

    # -- outcomes -------------------------------------------------------------------------

    def ended(self, job_id: str, outcome: Outcome, now: float, run: Run) -> Job | None:
        """A run of ``job_id`` ended (at ``now``) as ``outcome`` says: record it, and
        decide when the job is due next. ``None``: not a job in flight (an item pushed in,
        a run re-driven by an operator, or a job that has gone): nothing is decided."""
        job = self.jobs.get(job_id)
        if job is None or not job.running:
            return None
        job.running = False
        self.runs += 1
        job.history.append(run)
        self.store.add_run(job, run)
        if outcome.error:
            job.last_error = outcome.error
        if job.removed:  # unset while it ran
            self.store.save(job)
            return job
        kind = outcome.kind
        if kind == "unset":
            job.removed, job.next_run = True, None
            self._status(job, "unset", now)
        elif kind == "stopped":
            job.rule, job.parsed, job.next_run = "STOP", _STOP, None
            self._status(job, "stopped", now)
        elif job.parsed is None:  # its rule was set to a bad one while it ran
            job.next_run = None
            self._status(job, "bad rule", now)
        elif kind in ("failed", "timed out"):
            retry = self.schedule.reschedule_on_error
            job.next_run = job.parsed.next(now) if retry else None
            self._status(job, kind, now)
        else:
            if kind == "backoff":
                job.next_run = job.parsed.first(now + outcome.backoff_s)
            else:
                job.next_run = job.parsed.next(now)
            status = "done" if job.next_run is None else kind
            self._status(job, "scheduled" if status == "ok" else status, now)
        self._push(job)
        self.store.save(job)
        return job

    def _status(self, job: Job, status: str, now: float) -> None:
        job.status, job.status_at = status, now

    # -- what operators see -------------------------------------------------------------

    def describe(self, job: Job, running: dict[str, Any] | None = None) -> dict[str, Any]:
        """One job as ``schedule tell`` shows it (``running``: its live hand-out, if any:
        ``{"worker", "since"}``)."""
        status = job.status
        if running is not None and job.running:
            status = "running"
        return {
            "job": job.job,
            "task_type": job.task_type,
            "rule": job.rule,
            "data": job.data,
            "status": status,
            "status_at": running["since"] if status == "running" and running else job.status_at,
            "next_run": job.next_run,
            "last_error": job.last_error or None,
            "timeout_s": self.timeout_of(job.job),
            "running_on": running["worker"] if status == "running" and running else None,
            "runs": [
                {
                    "started": r.started,
                    "worker": r.worker,
                    "duration_s": r.duration_s,
                    "outcome": r.outcome,
                    "error": r.error or None,
                }
                for r in job.history
            ],
        }

    def listing(self, limit: int, live: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """At most ``limit`` jobs as the dashboard lists them: those running first, then
        the next due, then the others, latest status first (``live``: what
        :meth:`describe` takes, per job running now)."""

        def order(job: Job) -> tuple[int, float, str]:
            if job.running:
                return 0, -job.status_at, job.job
            if job.next_run is not None:
                return 1, job.next_run, job.job
            return 2, -job.status_at, job.job

        kept = (j for j in self.jobs.values() if not j.removed)
        out = []
        for job in heapq.nsmallest(limit, kept, key=order):
            running = live.get(job.job) if job.running else None
            out.append(
                {
                    "job": job.job,
                    "rule": job.rule,
                    "status": "running" if running else job.status,
                    "status_at": running["since"] if running else job.status_at,
                    "next_run": job.next_run,
                    "last_error": job.last_error or None,
                    "running_on": running["worker"] if running else None,
                }
            )
        return out

    def upcoming(self, limit: int) -> list[tuple[float, str]]:
        """The next ``limit`` due times, earliest first, as ``(time, job)``."""
        valid = [
            (when, job_id)
            for when, _, job_id in self._heap
            if (job := self.jobs.get(job_id)) is not None
            and not job.removed
            and not job.running
            and job.next_run == when
        ]
        return heapq.nsmallest(limit, valid)
