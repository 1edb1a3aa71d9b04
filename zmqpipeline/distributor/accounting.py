"""Where every item of a task is: the one count behind the report, END, ``on_progress`` and
the status, so that they add up however a run ends (SPEC guarantee 11)::

    collected + failed + in_flight + not_handed_out == size

An *item* here is one unit of the task's work, counted once whatever became of it: an
item re-driven by an operator (``retry_failed``) goes out under a new seq but is the
same item, so it is counted once; an item handed back by a worker (RECALL) and given to
another is one item handed out, not two. ``failed`` counts items that failed for good; a
failure of the task's own code (``handle`` or ``initialize`` raised, a stage's
``derive`` raised) is no item and is counted apart as ``errors``. ``in_flight`` counts
every item handed out and not yet collected or failed: at a worker, waiting to be
retried, or (a resumed run) handed out before the crash and not made again yet.
``not_handed_out`` is what the task declared and never handed out (``size`` minus the
items handed out), and for a stage or an open-ended task what waits in its backlog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .state import task_size

if TYPE_CHECKING:
    from ..runtime.seen import SeenSet
    from .scheduler import Scheduler
    from .state import TaskState

__all__ = ["TaskCounts", "task_counts"]


@dataclass(frozen=True, slots=True)
class TaskCounts:
    """Where the items of one task are (see the module's docstring)."""

    handed_out: int  # items handed out at least once (each counted once)
    collected: int
    failed: int  # items that failed for good
    errors: int  # failures of the task's own code: no item
    in_flight: int  # handed out, neither collected nor failed yet
    not_handed_out: int | None  # None: the task declares no size and has no backlog
    size: int | None  # declared (``n_items`` or ``len(task)``); None if none
    collected_before: int  # a resumed run: collected by the run's earlier part(s)

    def as_dict(self) -> dict[str, Any]:
        """The counts as the summary and the status carry them."""
        return {
            "handed_out": self.handed_out,
            "in_flight": self.in_flight,
            "collected": self.collected,
            "failed": self.failed,
            "errors": self.errors,
            "not_handed_out": self.not_handed_out,
            "size": self.size,
            "collected_before": self.collected_before,
        }


def task_counts(s: Scheduler, task_type: str) -> TaskCounts:
    """The counts of ``task_type`` in ``s`` now. Costs a walk over the task's failures
    (and, while a resumed run re-makes what was in flight at the crash, over the seqs
    done out of order), nothing per item collected."""
    state = s.tasks[task_type]
    failed = sum(1 for f in state.failed if f["seq"] is not None)
    redriven = s.redriven[task_type]
    top = state.next_seq
    pending = 0  # a resumed run: in flight at the crash, not made again yet
    resume = s.resuming.get(task_type)
    if resume is not None:
        redriven += len(resume.redriven)
        if resume.limit > top:
            pending = _pending(state, resume.done, resume.redriven, resume.limit)
            top = resume.limit
    # a stage's or open-ended task's seqs are given as items are made: waiting ones
    # are not handed out yet
    handed_out = top - redriven - s.stages.waiting(task_type)
    size = task_size(state.task) if not state.task.sources else None
    backlog = s.stages.backlog.get(task_type)
    if backlog is not None:
        not_handed_out: int | None = len(backlog)
    elif size is not None:
        not_handed_out = max(0, size - handed_out)
    else:
        not_handed_out = None
    return TaskCounts(
        handed_out=handed_out,
        collected=state.collected,
        failed=failed,
        errors=len(state.failed) - failed,
        in_flight=len(state.in_flight) + pending,
        not_handed_out=not_handed_out,
        size=size,
        collected_before=s.collected_before.get(task_type, 0),
    )


def _pending(state: TaskState, done: SeenSet, redriven: frozenset[int], limit: int) -> int:
    """Seqs in ``[next_seq, limit)`` neither done nor re-driven (those are in flight as
    they are): handed out before the crash, ``handle`` has not made them again yet."""
    low = state.next_seq
    span = limit - low
    done_below = max(0, min(done.low, limit) - low)
    done_above = sum(1 for seq in done.above if max(low, done.low) <= seq < limit)
    re = sum(1 for seq in redriven if low <= seq < limit and seq not in done)
    return max(0, span - done_below - done_above - re)
