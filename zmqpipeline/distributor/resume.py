"""Resuming a run from the distributor's journal: which tasks are finished, which items
are not handed out again, and what the report says of it. Used by the
:class:`~.scheduler.Scheduler`; the journal itself is :mod:`zmqpipeline.journal.run`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..journal.run import JournaledRun
from ..runtime.seen import SeenSet
from .failures import made_again_on_resume
from .state import Item

if TYPE_CHECKING:
    from .state import TaskState

__all__ = ["TaskResume", "jump_ahead", "resume_report", "resume_tasks"]


@dataclass(eq=False)
class TaskResume:
    """One task of a resumed run: which seqs are not handed out again."""

    #: Seqs ACKed (or failed for good) before the restart, and ACKs caught since.
    done: SeenSet
    #: The task's ``next_seq`` in the journal: below it, a seq not done was in flight.
    limit: int
    #: Items skipped as already collected (or failed).
    skipped: int = 0
    #: Items that were in flight at the crash, handed out again.
    re_handed_out: int = 0
    #: Seqs operators gave to re-driven items (``retry_failed``): not ``handle``'s to make.
    redriven: frozenset[int] = frozenset()

    def skip(self, seq: int) -> bool:
        """``True``: ``seq`` is done, do not hand it out (and count it)."""
        if seq in self.done:
            self.skipped += 1
            return True
        if seq < self.limit:
            self.re_handed_out += 1
        return False


def resume_tasks(states: dict[str, TaskState], journaled: JournaledRun) -> dict[str, TaskResume]:
    """Set each task's state from the journal: finished tasks stay finished, the others
    get a :class:`TaskResume`. A task that had handed out items and whose class says
    ``resumable = False`` is refused with a :class:`ConfigurationError` naming it."""
    resumes: dict[str, TaskResume] = {}
    for task_type, state in states.items():
        state.collected = journaled.collected.get(task_type, 0)
        redrives = {seq: f for f, seq in journaled.redrives if f["task_type"] == task_type}
        gone = {f["item_id"] for f in redrives.values()}  # failures an operator re-drove
        failed = [
            f for f in journaled.failed if f["task_type"] == task_type and f["item_id"] not in gone
        ]
        next_seq = journaled.next_seq.get(task_type, 0)
        if task_type in journaled.finished:
            state.finished = True
            state.task.is_complete = True
            state.failed = failed
            state.next_seq = next_seq
            continue
        if next_seq and not getattr(state.task, "resumable", True):
            raise ConfigurationError(
                f"task {type(state.task).__name__} ({task_type}) is not resumable "
                f"(resumable = False) and run {journaled.run} stopped after it had handed "
                f"out {next_seq} item(s): start a new run (fresh=True, --fresh)"
            )
        # handle() runs again: its own failures give way to what happens then
        state.failed = [f for f in failed if not made_again_on_resume(f)]
        if state.task.sources or state.task.open_ended:
            # its items got their seqs as they were made (the journal holds those not
            # collected yet: see StageBook.restore): new ones go on from there
            state.next_seq = next_seq
        done = journaled.done.get(task_type, SeenSet())
        resumes[task_type] = resume = TaskResume(done, next_seq, redriven=frozenset(redrives))
        for seq, record in redrives.items():  # re-driven, not collected: it goes out again
            if seq not in done:
                resume.re_handed_out += 1
                state.in_flight[seq] = Item(seq, record["data"])
                state.retry.append((0.0, seq))
    return resumes


def jump_ahead(state: TaskState, resume: TaskResume) -> None:
    """If the task defines ``resume(next_seq)``, let it jump to the watermark: the seqs
    under it are not made again (they count as skipped)."""
    jump = getattr(state.task, "resume", None)
    low = resume.done.low
    if jump is None or low == 0:
        return
    made = low - sum(1 for seq in resume.redriven if seq < low)  # handle()'s, not re-drives
    jump(made)
    resume.skipped += made
    state.next_seq = low


def resume_report(
    run: int, finished: Iterable[str], resumes: dict[str, TaskResume]
) -> dict[str, Any]:
    """What the report says of a resumed run."""
    return {
        "run": run,
        "tasks_already_finished": sorted(finished),
        "skipped": {tt: r.skipped for tt, r in resumes.items()},
        "re_handed_out": {tt: r.re_handed_out for tt, r in resumes.items()},
    }
