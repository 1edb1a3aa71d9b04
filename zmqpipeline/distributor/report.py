"""``RunReport``: what :meth:`~zmqpipeline.Distributor.run` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunReport"]


@dataclass
class RunReport:
    """What :meth:`Distributor.run` returns: counts, failures and timings of one run."""

    #: Items collected, per task type.
    collected: dict[str, int]
    #: Items that failed for good: ``{'task_type', 'seq', 'attempts', 'error'}`` each
    #: (``seq`` is ``None`` when the task's ``handle()`` itself kept raising).
    failed: list[dict[str, Any]]
    #: Items handed out again (user code raised, a worker died, a time limit passed).
    retries: int
    #: From the first item handed out to the last ACK (or the stop).
    wall_time_s: float
    aborted: bool
    #: The whole of ``run()``: waiting for workers and metadata, and the shutdown too.
    elapsed_s: float = 0.0
    #: Hand-out to ACK, percentiles ``p50``, ``p90``, ``p99`` of the last 10,000 items.
    latency_ms: dict[str, float] = field(default_factory=dict)
    #: Items handed out and not handed back unstarted (RECALL), per worker id: what each
    #: worker took on (an item handed back and given to another counts for that one).
    per_worker: dict[str, int] = field(default_factory=dict)
    #: Per task type: ``handed_out``, ``in_flight``, ``collected``, ``failed`` (items),
    #: ``errors`` (the task's own code raised), ``size`` (declared size or ``None``) and
    #: ``not_handed_out``; collected + failed + in_flight + not_handed_out = size, however
    #: the run ended (see :mod:`zmqpipeline.distributor.accounting`); with a result cache
    #: also ``cached`` (collected from the cache, a part of ``collected``).
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Every worker seen: ``id``, ``host``, ``pid``, ``task_type``, ``handed_out`` (items
    #: sent to it), ``handed_back`` (of those, given back unstarted for another worker),
    #: ``collected`` (its results the collector ACKed, also if it died later).
    workers: list[dict[str, Any]] = field(default_factory=list)
    #: Bad messages dropped, per reason.
    dropped: dict[str, int] = field(default_factory=dict)
    #: How the run ended: ``completed``, ``drained`` (an operator's drain: nothing new was
    #: handed out after it) or ``stopped`` (a stop command or signal).
    ended_by: str = "completed"
    #: Items in flight when the run was stopped, abandoned (``TASK/SEQ`` each).
    abandoned: list[str] = field(default_factory=list)
    #: A run resumed from a journal: ``run`` (its id), ``tasks_already_finished``, and per
    #: task type ``skipped`` (items collected before the crash, not handed out again) and
    #: ``re_handed_out`` (items in flight at the crash, handed out again). ``{}`` otherwise.
    resumed: dict[str, Any] = field(default_factory=dict)
    #: The journal held a run that had ended: nothing was done (``fresh=True`` starts anew).
    already_complete: bool = False

    @property
    def ok(self) -> bool:
        """True only when every item of every task was collected: the run was not stopped
        early, nothing failed (``Task.handle`` included) and nothing was left unsent."""
        unsent = any(t.get("not_handed_out") for t in self.tasks.values())
        drained = any(t.get("state") == "drained" for t in self.tasks.values())
        return not self.aborted and not self.failed and not unsent and not drained

    @property
    def total(self) -> int:
        """Items collected, all task types together."""
        return sum(self.collected.values())
