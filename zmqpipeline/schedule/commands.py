"""The control endpoint's schedule commands (what ``zmqpipeline schedule ...`` sends),
answered from the distributor's :class:`~zmqpipeline.distributor.recurring.Recurring`
part, with no socket in sight; the control logic dispatches every ``schedule_*``
command here.

From Python: ``zmqpipeline.Control(endpoint).call("schedule_tell", {"job": "inbox"})``.

========================  =====================================================  ==========
command                   args                                                   reply
========================  =====================================================  ==========
``schedule_set``          ``job``, ``rule``; ``data`` (dict), ``after`` (epoch    ``job``
                          seconds), ``timeout_s``
``schedule_load``         ``jobs``: ``[[job, rule, data], ...]``                  ``set``
``schedule_unset``        ``job``                                                ``job``
``schedule_list``         --                                                     ``jobs``
``schedule_statuses``     ``before`` (epoch seconds: only jobs whose status is    ``statuses``
                          older)
``schedule_tell``         ``job``                                                ``job``
========================  =====================================================  ==========

Every command takes ``task_type`` too, needed only when the run has several scheduled
tasks. A bad argument gets an error reply naming it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..distributor.recurring import Recurring
    from .book import JobBook

__all__ = ["SCHEDULE_COMMANDS", "answer"]

SCHEDULE_COMMANDS = (
    "schedule_set",
    "schedule_load",
    "schedule_unset",
    "schedule_list",
    "schedule_statuses",
    "schedule_tell",
)
#: Jobs one ``schedule_load`` may set.
LOAD_MAX_JOBS = 1000


class _Refused(Exception):
    """A command's argument is wrong: the error reply's text."""


def answer(
    recurring: Recurring, command: str, args: dict[str, Any], now: float
) -> tuple[bool, dict[str, Any]]:
    """``(ok, body)`` for one schedule command (``body["error"]`` when not ok); ``now``:
    the distributor's monotonic time (what runs in flight are timed with)."""
    try:
        book = _book(recurring, args.get("task_type"))
        wall = recurring.clock()
        if command == "schedule_set":
            job = _job_id(args)
            set_ = book.set(
                job,
                _str(args, "rule"),
                _dict(args.get("data"), "data"),
                wall,
                after=_number(args, "after"),
                timeout_s=_number(args, "timeout_s", positive=True),
            )
            return True, {"job": book.describe(set_)}
        if command == "schedule_load":
            return True, {"set": _load(book, args.get("jobs"), wall)}
        if command == "schedule_unset":
            job = _job_id(args)
            if not book.unset(job, wall):
                raise _Refused(f"no job {job!r} in task {book.task_type}")
            return True, {"job": book.describe(book.jobs[job])}
        if command == "schedule_list":
            return True, {"jobs": [[j.job, j.rule] for j in _kept(book)]}
        if command == "schedule_statuses":
            return True, {"statuses": _statuses(recurring, book, _number(args, "before"), now)}
        if command == "schedule_tell":
            job = _job_id(args)
            known = book.jobs.get(job)
            if known is None:
                raise _Refused(f"no job {job!r} in task {book.task_type}")
            return True, {"job": book.describe(known, recurring.live(book.task_type, now).get(job))}
    except _Refused as exc:
        return False, {"error": str(exc)}
    return False, {"error": f"unknown schedule command {command!r}"}


def _book(recurring: Recurring, task_type: Any) -> JobBook:
    books = recurring.books
    if not books:
        what = "no scheduled task" if not recurring.schedules else "the run has not started"
        raise _Refused(f"{what}: no schedule to see or change")
    if task_type is None:
        if len(books) > 1:
            raise _Refused("several scheduled tasks: give task_type, one of " + ", ".join(books))
        return next(iter(books.values()))
    if task_type not in books:
        raise _Refused(f"{task_type!r} is not a scheduled task (one of {', '.join(books)})")
    return books[task_type]


def _str(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _Refused(f"{name}: a non-empty string is needed, not {value!r}")
    return value


def _job_id(args: dict[str, Any]) -> str:
    return _str(args, "job").strip()


def _dict(value: Any, name: str) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise _Refused(f"{name}: a JSON object is needed, not {type(value).__name__}")
    return value


def _number(args: dict[str, Any], name: str, positive: bool = False) -> float | None:
    value = args.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Refused(f"{name}: a number is needed, not {value!r}")
    if positive and value <= 0:
        raise _Refused(f"{name}: a number > 0 is needed, not {value!r}")
    return float(value)


def _load(book: JobBook, jobs: Any, now: float) -> int:
    if not isinstance(jobs, list) or len(jobs) > LOAD_MAX_JOBS:
        raise _Refused(f"jobs: a list of at most {LOAD_MAX_JOBS} [job, rule, data] entries")
    checked = []
    for entry in jobs:
        if not (isinstance(entry, list) and len(entry) == 3):
            raise _Refused(f"jobs: each entry is [job, rule, data], not {entry!r}")
        job, rule, data = entry
        args = {"job": job, "rule": rule}
        checked.append((_job_id(args), _str(args, "rule"), _dict(data, "data")))
    for job, rule, data in checked:
        book.set(job, rule, data, now)
    return len(checked)


def _kept(book: JobBook) -> list[Any]:
    return sorted((j for j in book.jobs.values() if not j.removed), key=lambda j: j.job)


def _statuses(
    recurring: Recurring, book: JobBook, before: float | None, now: float
) -> list[dict[str, Any]]:
    live = recurring.live(book.task_type, now)
    out = []
    for job in sorted(book.jobs.values(), key=lambda j: j.job):
        running = live.get(job.job)
        status = "running" if running is not None and job.running else job.status
        at = running["since"] if status == "running" and running else job.status_at
        if before is not None and at >= before:
            continue
        out.append(
            {
                "job": job.job,
                "status": status,
                "at": at,
                "next_run": job.next_run,
                "last_error": job.last_error or None,
            }
        )
    return out
