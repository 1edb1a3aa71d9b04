"""What each worker of a task may hold for all of them to finish together: its fair share
near the end of a task of known size, its share of a burst of items that come a few at a
time (a stage's, an open-ended task's), and how loaded such a worker is. Read by the
hand-out (``handout.py``)."""

from __future__ import annotations

import math
from collections.abc import Callable

from .state import TaskState, WorkerRecord

__all__ = ["another_takes", "any_proven", "burst_share", "fair_share", "load", "share_of"]


def burst_share(state: TaskState, waiting: int) -> float | None:
    """With ``waiting`` items in a stage's or an open-ended task's backlog: what each of
    its workers may hold per thread for all to end up equally loaded (what waits and what
    they hold, over all their threads). A burst is split so (else the first with credit
    takes it all, and 20 jobs due at once run one by one), and one that took its share
    while another had no credit takes none of the rest when that one asks. ``None``: none
    wait."""
    if not waiting:
        return None
    held, threads = _per_thread(state, load)
    return (waiting + held) / threads if threads else None


def fair_share(state: TaskState) -> float | None:
    """Items per thread each worker may hold for all to finish together: what the task
    has left to make plus what every worker holds, over all their threads (``None`` if
    the task does not declare its size). It binds only near the end, where a worker
    asking first would otherwise take what the others will lack, and the fair tail
    would have to move it back."""
    if state.size is None:
        return None
    held, threads = _per_thread(state, lambda w: len(w.held))
    if not threads:
        return None
    return (max(0, state.size - state.next_seq) + len(state.retry) + held) / threads


def _per_thread(state: TaskState, measure: Callable[[WorkerRecord], int]) -> tuple[int, int]:
    """What the task's confirmed workers hold (as ``measure`` counts it), and their threads."""
    held = threads = 0
    for worker in state.workers.values():
        if worker.confirmed:
            held += measure(worker)
            threads += worker.threads
    return held, threads


def load(worker: WorkerRecord) -> int:
    """How loaded a worker of items that come a few at a time is: the less of what it
    holds (results it holds back count) and of what it asked for (credit asked for long
    ago counts, if it has asked less since)."""
    return min(len(worker.held), worker.capacity - worker.credit)


def share_of(worker: WorkerRecord, share: float) -> int:
    """The items ``worker`` may hold at a fair ``share`` per thread (one per thread at least)."""
    return max(worker.threads, math.ceil(share * worker.threads))


def another_takes(state: TaskState, worker: WorkerRecord) -> bool:
    """Some other worker can take items now: it has credit, is not overdue (it may not
    give them back) and holds less than its fair share. (A RECALL is decided on what each
    worker holds, results it holds back included; when the items come back, the one that
    gave them may hold the least.)"""
    share = fair_share(state)
    return any(
        w is not worker
        and w.confirmed
        and w.credit > 0
        and not w.overdue
        and (share is None or len(w.held) < share_of(w, share))
        for w in state.workers.values()
    )


def any_proven(state: TaskState) -> bool:
    """Some worker of the task has delivered items (since its last overdue item, which
    resets the count): items whose workers died or went silent wait for such a one (it
    may have no credit just now), rather than go to one that has proven nothing, such as
    the worker they came from."""
    return any(w.completed for w in state.workers.values())
