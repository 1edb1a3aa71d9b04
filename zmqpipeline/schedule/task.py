"""``Schedule`` and ``ScheduledTask``: recurring jobs on an open-ended task.

::

    class Poll(zmqpipeline.ScheduledTask):
        task_type = zmqpipeline.TaskType("POLL")
        endpoint = zmqpipeline.EndpointAddress("ipc://poll.ipc")
        schedule = zmqpipeline.Schedule(
            jobs={
                "inbox": "FREQ=SECONDLY;INTERVAL=30",
                "report": ("AT:2025-06-01T02:00", {"to": "ops"}),
            },
            timeout_s=60,
        )

Each due job is handed out as one item ``{"job": JOB_ID, "data": {...}, "due": T}``
(``due``: when it was due, seconds since the epoch); what the worker does with it
steers the job (see :mod:`zmqpipeline.schedule.outcomes`).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..task import Task

__all__ = ["Schedule", "ScheduledTask", "read_jobs_csv"]

#: The item time limit of a scheduled task: the job timeout replaces it.
_NO_ITEM_LIMIT_S = 365 * 86400.0

JobSpec = str | tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Schedule:
    """The jobs of a :class:`ScheduledTask` and what becomes of them.

    ``jobs``: job id -> rule, or -> ``(rule, data)``; ``csv``: a file of ``JOB_ID,RULE``
    lines (an optional third column: the job's data as JSON), read when the distributor
    starts (a relative path is from the current folder). A job the store already holds
    keeps its state (a restart keeps every schedule, and what a worker or an operator
    did to it) unless the rule given here changed since the last start.

    ``timeout_s``: a run with no outcome after this long is recorded as ``timed out``;
    ``reschedule_on_error``: a run that failed for good (or timed out) leaves the job due
    again as its rule says (default: not, as redbike); ``history``: runs kept per job;
    ``timezone``: where wall-clock rules (``BYHOUR=2``, ``AT:`` without an offset) are
    read (``None``: this machine's); ``end_when_idle``: the task completes (and a run
    made only of it ends) once no job will ever be due again and none is running.
    """

    jobs: Mapping[str, JobSpec] = field(default_factory=dict)
    csv: str | None = None
    timeout_s: float = 60.0
    reschedule_on_error: bool = False
    history: int = 20
    timezone: str | None = None
    end_when_idle: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.jobs, Mapping):
            raise TypeError("Schedule(jobs=...) must map job ids to rules")
        for job, spec in self.jobs.items():
            _check_spec(job, spec)
        timeout = self.timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"Schedule(timeout_s=...) must be a number, not {timeout!r}")
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError(f"Schedule(timeout_s=...) must be > 0, not {timeout!r}")
        if not isinstance(self.history, int) or isinstance(self.history, bool) or self.history < 1:
            raise ValueError(f"Schedule(history=...) must be an int >= 1, not {self.history!r}")

    def initial_jobs(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """The jobs of ``jobs`` and ``csv`` (the CSV's win), as ``id -> (rule, data)``."""
        out = {
            job: (spec, {}) if isinstance(spec, str) else spec for job, spec in self.jobs.items()
        }
        if self.csv is not None:
            out.update(read_jobs_csv(self.csv))
        return out


def _check_spec(job: Any, spec: Any) -> None:
    if not isinstance(job, str) or not job:
        raise TypeError(f"a job id must be a non-empty str, not {job!r}")
    if isinstance(spec, str):
        return
    if not (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], str)
        and isinstance(spec[1], dict)
    ):
        raise TypeError(f"job {job!r}: a rule (str) or (rule, data dict), not {spec!r}")


def read_jobs_csv(path: str | os.PathLike[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """``JOB_ID,RULE[,DATA_JSON]`` lines (blank lines, ``#`` comments and a header
    ``job_id,rule`` skipped); a bad line is a ``ValueError`` naming the file and line."""
    jobs: dict[str, tuple[str, dict[str, Any]]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            where = f"{os.fspath(path)}, line {number}"
            if number == 1 and [c.strip().lower() for c in row[:2]] == ["job_id", "rule"]:
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise ValueError(f"{where}: expected JOB_ID,RULE[,DATA_JSON], got {row!r}")
            data: Any = {}
            if len(row) > 2 and row[2].strip():
                try:
                    data = json.loads(",".join(row[2:]))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{where}: the data is not JSON: {exc}") from None
                if not isinstance(data, dict):
                    raise ValueError(f"{where}: the data must be a JSON object")
            jobs[row[0].strip()] = (row[1].strip(), data)
    return jobs


class ScheduledTask(Task):
    """An open-ended :class:`~zmqpipeline.Task` fed by its :attr:`schedule`: each job
    is handed out when it is due, never while its previous run is still going.

    Its items are ``{"job": JOB_ID, "data": {...}, "due": T}``. Its item time limit is
    the job timeout (``Schedule.timeout_s``), not the adaptive one: a long run is never
    handed out twice at once. The retry policy (``max_attempts``, ``retry_backoff_s``,
    ``retry_for``) applies to each run. It may still take pushed items, which are not
    jobs (``zmqpipeline push``).
    """

    open_ended: ClassVar[bool] = True
    #: The jobs and their rules (see :class:`Schedule`).
    schedule: ClassVar[Schedule] = Schedule()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not isinstance(cls.schedule, Schedule):
            raise TypeError(
                f"{cls.__name__}.schedule must be a zmqpipeline.Schedule, not "
                f"{type(cls.schedule).__name__}"
            )
        if "item_time_limit_s" not in cls.__dict__:
            cls.item_time_limit_s = _NO_ITEM_LIMIT_S
