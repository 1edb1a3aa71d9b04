"""The counts a run reports: what ``on_progress`` receives, what END carries, and the
entries the report keeps per worker. Read-only views of a
:class:`~zmqpipeline.distributor.scheduler.Scheduler`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .accounting import task_counts

if TYPE_CHECKING:
    from .scheduler import Scheduler

__all__ = ["end_summary", "run_summary", "worker_entry"]

#: END carries at most this many failures (the report keeps them all).
END_FAILURES = 1000


def worker_entry(wid: bytes, task_type: str) -> dict[str, Any]:
    """The report's record of one worker; its id is ``host:pid:random``."""
    text = wid.decode(errors="replace")
    host, _, rest = text.partition(":")
    pid = rest.partition(":")[0]
    return {
        "id": text,
        "host": host,
        "pid": int(pid) if pid.isdigit() else None,
        "task_type": task_type,
        "handed_out": 0,  # items sent to it, handed back ones included
        "handed_back": 0,  # of those, given back unstarted (RECALL) for another worker
        "collected": 0,
    }


def run_summary(scheduler: Scheduler, aborted: bool) -> dict[str, Any]:
    """Counts of the run so far: ``tasks`` maps each task type to the counts of
    :func:`~zmqpipeline.distributor.accounting.task_counts` (``handed_out``,
    ``in_flight``, ``collected``, ``failed``, ``errors``, ``not_handed_out``, ``size``:
    collected + failed + in flight + not handed out = size), its ``retries``, and for a
    stage or an open-ended task ``sources``, ``open_ended``, ``backlog`` and the counts
    of :meth:`~zmqpipeline.distributor.stages.StageBook.summary`; ``workers`` describes
    every worker seen; ``failed`` lists every failure for good, with its data. A task with a
    result cache also has ``cached`` (its items collected from the cache: a part of
    ``collected``)."""
    tasks = scheduler.tasks
    return {
        "tasks": {
            tt: {
                **task_counts(scheduler, tt).as_dict(),
                "retries": s.retries,
                **scheduler.stages.summary(tt),  # a stage's sources, backlog and counts
                **scheduler.cache.summary(tt),  # cached: collected from the result cache
            }
            for tt, s in tasks.items()
        },
        "workers": [dict(w) for w in scheduler.worker_log.values()],
        "collected": {tt: s.collected for tt, s in tasks.items()},
        "failed": [f for s in tasks.values() for f in s.failed],
        "retries": sum(s.retries for s in tasks.values()),
        "aborted": aborted,
        "task_type": scheduler.last_finished,
    }


def end_summary(scheduler: Scheduler, aborted: bool) -> dict[str, Any]:
    """What END carries to the collector's ``handle_finished``: the counts without the
    items' data, how the run ended (``ended_by``), at most :data:`END_FAILURES`
    failures, each error's last line only, so END stays small however the run went."""
    tasks = scheduler.tasks
    failed = [
        {**{k: v for k, v in f.items() if k != "data"}, "error": _last_line(f["error"])}
        for s in tasks.values()
        for f in s.failed[:END_FAILURES]
    ]
    return {
        "collected": {tt: s.collected for tt, s in tasks.items()},
        "failed": failed[:END_FAILURES],
        "retries": sum(s.retries for s in tasks.values()),
        "aborted": aborted,
        # completed, drained (an operator's drain: items left unsent) or stopped
        "ended_by": scheduler.ended_by or ("stopped" if aborted else "completed"),
        "task_type": scheduler.last_finished,
    }


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""
