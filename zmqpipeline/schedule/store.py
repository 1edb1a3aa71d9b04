"""Where a schedule is kept: every job (its rule, data, next run, last status with its
time, last error) and the last runs of each (time, worker, duration, outcome), in one
SQLite file beside the distributor's journal (stdlib :mod:`sqlite3`, WAL mode), or in
memory when the run has no journal.

Writes are buffered and committed at most every :data:`COMMIT_EVERY_S` (and on close),
so the store never sets the pace; a crash forgets at most that last batch: a job whose
outcome is forgotten runs again once at the restart.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..journal.store import pack, unpack
from .rules import Rule

__all__ = ["COMMIT_EVERY_S", "Job", "Run", "ScheduleStore", "store_path"]

#: Buffered writes are committed at least this often.
COMMIT_EVERY_S = 0.1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    task_type TEXT NOT NULL, job TEXT NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (task_type, job));
CREATE TABLE IF NOT EXISTS runs (
    task_type TEXT NOT NULL, job TEXT NOT NULL, started REAL, worker TEXT,
    duration_s REAL, outcome TEXT, error TEXT);
CREATE INDEX IF NOT EXISTS runs_of_job ON runs (task_type, job);
"""
#: The fields of a :class:`Job` the store keeps.
_KEPT = (
    "rule",
    "data",
    "start",
    "timeout_s",
    "next_run",
    "status",
    "status_at",
    "last_error",
    "removed",
    "origin_rule",
    "running",
)


def store_path(journal: str | os.PathLike[str]) -> str:
    """The schedule's file beside the distributor journal ``journal``."""
    base, _ = os.path.splitext(os.fspath(journal))
    return base + ".schedule.sqlite"


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a job, as its history keeps it."""

    #: When it was handed out (seconds since the epoch).
    started: float
    #: The worker's id ("" if unknown).
    worker: str
    #: From hand-out to the outcome, as the distributor saw it.
    duration_s: float
    #: See :class:`~zmqpipeline.schedule.outcomes.Outcome`.
    outcome: str
    error: str = ""


@dataclass(eq=False, slots=True)
class Job:
    """One job of a scheduled task: what the store keeps, and its parsed rule."""

    task_type: str
    job: str
    rule: str
    data: dict[str, Any]
    #: What an RRULE without DTSTART counts from (seconds since the epoch).
    start: float
    #: Its own timeout (``None``: the schedule's).
    timeout_s: float | None
    #: When it is due next (``None``: not any more, or it is running).
    next_run: float | None
    status: str
    status_at: float
    last_error: str = ""
    #: Unset (kept so that a job defined in code stays unset across restarts).
    removed: bool = False
    #: The rule the task's code (or CSV) last gave it: a changed one is set again.
    origin_rule: str | None = None
    #: Queued or handed out, its outcome not known yet.
    running: bool = False
    parsed: Rule | None = None
    history: deque[Run] = field(default_factory=deque)


class ScheduleStore:
    """The jobs and runs of every scheduled task of one distributor (``path`` ``None``:
    in memory)."""

    def __init__(self, path: str | os.PathLike[str] | None, history: int = 20) -> None:
        self.path = None if path is None else os.fspath(path)
        self.history = history
        self.db = sqlite3.connect(self.path or ":memory:", isolation_level=None)
        if self.path is not None:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self._jobs: dict[tuple[str, str], Job] = {}
        self._runs: list[tuple[Any, ...]] = []
        self._rows: dict[tuple[str, str], int] = {}  # runs kept per job, to trim
        self._last_commit = time.monotonic()

    def load(self, task_type: str) -> list[Job]:
        """Every job of ``task_type`` with its last runs, as the store holds them."""
        jobs = []
        rows = self.db.execute("SELECT job, record FROM jobs WHERE task_type = ?", (task_type,))
        for name, blob in rows.fetchall():
            record = unpack(blob)
            job = Job(task_type, name, **{k: record.get(k) for k in _KEPT})
            job.data = job.data or {}
            job.removed, job.running = bool(job.removed), bool(job.running)
            runs = self.db.execute(
                "SELECT started, worker, duration_s, outcome, error FROM runs "
                "WHERE task_type = ? AND job = ? ORDER BY rowid DESC LIMIT ?",
                (task_type, name, self.history),
            ).fetchall()
            job.history = deque((Run(*r) for r in reversed(runs)), maxlen=self.history)
            self._rows[(task_type, name)] = len(runs)
            jobs.append(job)
        return jobs

    def save(self, job: Job) -> None:
        """Keep ``job`` as it is now (written at the next commit)."""
        self._jobs[(job.task_type, job.job)] = job

    def add_run(self, job: Job, run: Run) -> None:
        """One more run of ``job`` (its history keeps the last ``history``)."""
        self._runs.append(
            (
                job.task_type,
                job.job,
                run.started,
                run.worker,
                run.duration_s,
                run.outcome,
                run.error,
            )
        )

    def maybe_commit(self, now: float) -> None:
        """Commit if there is something to and the last commit is old enough (``now``:
        :func:`time.monotonic`)."""
        if (self._jobs or self._runs) and now - self._last_commit >= COMMIT_EVERY_S:
            self.commit(now)

    def commit(self, now: float | None = None) -> None:
        """Write every buffered change in one transaction."""
        jobs, runs = self._jobs, self._runs
        self._jobs, self._runs = {}, []
        self._last_commit = time.monotonic() if now is None else now
        if not (jobs or runs):
            return
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?)",
                [(tt, name, pack(_record(job))) for (tt, name), job in jobs.items()],
            )
            db.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)", runs)
            self._trim(runs)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _trim(self, runs: list[tuple[Any, ...]]) -> None:
        """Keep the last ``history`` runs of each job: a job's older ones are deleted
        once it has twice as many (one DELETE per ``history`` runs of it)."""
        for run in runs:
            key = (run[0], run[1])
            count = self._rows.get(key, 0) + 1
            if count >= 2 * self.history:
                self.db.execute(
                    "DELETE FROM runs WHERE task_type = ? AND job = ? AND rowid NOT IN "
                    "(SELECT rowid FROM runs WHERE task_type = ? AND job = ? "
                    "ORDER BY rowid DESC LIMIT ?)",
                    (*key, *key, self.history),
                )
                count = self.history
            self._rows[key] = count

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self.db.close()


def _record(job: Job) -> dict[str, Any]:
    return {k: getattr(job, k) for k in _KEPT}
