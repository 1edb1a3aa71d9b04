"""Streaming stages and open-ended tasks: the distributor's bookkeeping, with no socket.

A **stage** is a :class:`~zmqpipeline.Task` whose ``sources`` name other task types: each
collected result of a source reaches the stage's :meth:`~zmqpipeline.Task.derive` once,
as it arrives (the collector forwards it on that item's ACK, see
docs/concepts/stages.md), and what ``derive`` returns waits in the stage's *backlog*
until a worker of the stage has room. An **open-ended** task's backlog is filled from
outside instead (:mod:`zmqpipeline.distributor.push`). Either way the task hands out from its
backlog instead of calling ``handle``, and is complete once its sources are finished,
its stream is closed (open-ended) and its backlog is empty.

Backpressure: while a stage's backlog, plus what its source has in flight, reaches
``settings.stage_backlog``, the source hands out nothing new, so a fast stage cannot flood
the distributor's memory while a slow one works; pushes are taken only as far as there is
room.

:class:`StageBook` holds the backlogs and the relations and makes every decision of the
feature; it is one part of the :class:`~zmqpipeline.distributor.scheduler.Scheduler`, which
calls it from a few well-marked places.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from ..runtime.runtime import UserCodeError, call_user
from ..task import Task
from .state import SchedulerPart

if TYPE_CHECKING:
    from .scheduler import Scheduler
    from .state import TaskState

__all__ = ["StageBook"]

task_logger = logging.getLogger("zmqpipeline.task")


class StageBook(SchedulerPart):
    """Per stage (or open-ended task): its sources and its backlog of items waiting to be
    handed out; per source: the stages it feeds."""

    def __init__(self, scheduler: Scheduler, tasks: list[Task]) -> None:
        super().__init__(scheduler)
        self.bound = scheduler.settings.stage_backlog
        self.sources: dict[str, list[str]] = {
            t.task_type: list(t.sources) for t in tasks if t.sources
        }
        self.open_ended = {t.task_type for t in tasks if t.open_ended}
        #: Per stage or open-ended task: the items waiting ...
        self.backlog: dict[str, deque[dict[str, Any]]] = {
            tt: deque() for tt in [*self.sources, *sorted(self.open_ended)]
        }
        #: ... and their seqs, given as each is derived or pushed (and journaled with
        #: it), so a resumed run hands it out under the same seq and never reuses one.
        self.seqs: dict[str, deque[int]] = {tt: deque() for tt in self.backlog}
        self.fed: dict[str, list[str]] = {}  # source -> the stages it feeds
        for stage, sources in self.sources.items():
            for source in sources:
                self.fed.setdefault(source, []).append(stage)
        #: Task types whose results the collector puts on their ACK (they feed stages).
        self.forward = [str(tt) for tt in sorted(self.fed)]
        #: Task types whose results the collector ACKs without ``handle_collection``.
        self.quiet = sorted(str(t.task_type) for t in tasks if not t.collect_results)
        self.closed: set[str] = set()
        #: Per stage: ``received`` (source results), ``derived`` (items made), ``filtered``
        #: (results that made none), ``pushed`` (items pushed in), ``backlog_peak`` (the
        #: most derived items ever waiting: at most the bound times the fan-out).
        self.counts: dict[str, Counter[str]] = {tt: Counter() for tt in self.backlog}

    def feeds_from_backlog(self, task_type: str) -> bool:
        """True for a stage or an open-ended task: it hands out its backlog, not ``handle``."""
        return task_type in self.backlog

    def blocked(self, task_type: str, in_flight: int) -> bool:
        """True while a stage fed by ``task_type`` has a full backlog (backpressure). The
        source's ``in_flight`` items count too, as the backlog they will become: so the
        backlog stays under the bound times the fan-out, however late their ACKs come."""
        stages = self.fed.get(task_type)
        if not stages:
            return False
        room = self.bound - in_flight
        return any(len(self.backlog[stage]) >= room for stage in stages)

    def ready_to_complete(self, task_type: str) -> bool:
        """Its sources are finished, its stream closed (open-ended), its backlog empty."""
        if self.backlog[task_type]:
            return False
        if task_type in self.open_ended and task_type not in self.closed:
            return False
        return all(self.s.tasks[s].finished for s in self.sources.get(task_type, ()))

    def summary(self, task_type: str) -> dict[str, Any]:
        """What the report and the progress show of one task: its sources and backlog."""
        if task_type not in self.backlog:
            return {}
        return {
            "sources": self.sources.get(task_type, []),
            "open_ended": task_type in self.open_ended,
            "backlog": len(self.backlog[task_type]),
            **self.counts[task_type],
        }

    # -- what the scheduler calls --------------------------------------------------------

    def take(self, state: TaskState) -> tuple[int, dict[str, Any]] | None:
        """The stage's next ``(seq, item)`` from its backlog (``None``: nothing waits). The
        call that takes the last one of a stage whose sources are finished completes it, as
        ``handle`` sets ``is_complete`` in the call that hands out the last item."""
        backlog = self.backlog[state.task_type]
        if not backlog:
            return None
        taken = self.seqs[state.task_type].popleft(), backlog.popleft()
        if not backlog and self.ready_to_complete(state.task_type):
            state.task.is_complete = True
        return taken

    def enter(self, state: TaskState, items: list[dict[str, Any]], journaled: bool = True) -> None:
        """Give ``items`` their seqs and put them in the backlog (and the journal, unless
        another part remakes them after a crash: then only their seqs are journaled, so a
        resumed run does not reuse them)."""
        backlog, seqs = self.backlog[state.task_type], self.seqs[state.task_type]
        journal = self.s.journal
        for payload in items:
            seq = state.next_seq
            state.next_seq = seq + 1
            backlog.append(payload)
            seqs.append(seq)
            if journal.records:
                if journaled:
                    journal.made(state.task_type, seq, payload)
                else:
                    journal.handed_out(state.task_type, seq)

    def restore(self, backlog: dict[str, list[tuple[int, Any]]], closed: set[str]) -> None:
        """A resumed run: the items its journal holds wait again, under their seqs."""
        for task_type, items in backlog.items():
            if task_type in self.backlog:
                self.seqs[task_type].extend(seq for seq, _ in items)
                self.backlog[task_type].extend(payload for _, payload in items)
        self.closed.update(closed & self.open_ended)

    def waiting(self, task_type: str) -> int:
        """Items of ``task_type`` made (derived, pushed) and not yet handed out."""
        backlog = self.backlog.get(task_type)
        return 0 if backlog is None else len(backlog)

    def feed(self, source: TaskState, seq: int, result: dict[str, Any]) -> None:
        """A result of ``source`` was collected (its first ACK carried it): each stage it
        feeds derives its items from it, once."""
        item_id = f"{source.task_type}/{seq}"
        for stage_type in self.fed[source.task_type]:
            stage = self.s.tasks[stage_type]
            counts = self.counts[stage_type]
            counts["received"] += 1
            items = self._derive(stage, result, item_id)
            if not items:
                counts["filtered"] += 1
                continue
            backlog = self.backlog[stage_type]
            self.enter(stage, items)
            counts["derived"] += len(items)
            if len(backlog) > counts["backlog_peak"]:
                counts["backlog_peak"] = len(backlog)

    def _derive(
        self, stage: TaskState, result: dict[str, Any], item_id: str
    ) -> list[dict[str, Any]]:
        task = stage.task
        failures = self.s.failures
        try:
            made = call_user(task_logger, "Task.derive", task.derive, result, item_id, item=item_id)
        except UserCodeError as exc:
            failures.derive_failed(stage, item_id, result, exc.text)
            return []
        if made is None:
            return []
        if isinstance(made, dict):
            return [made]
        if isinstance(made, list) and all(isinstance(x, dict) for x in made):
            return made
        error = (
            f"TypeError: {type(task).__name__}.derive() must return a dict, a list of dicts "
            f"or None, not {type(made).__name__}"
        )
        task_logger.error("%s (for result %s)", error, item_id)
        failures.derive_failed(stage, item_id, result, error)
        return []

    def source_finished(self, source: TaskState) -> None:
        """``source`` finished: a stage it fed that has nothing more coming completes (and
        finishes once nothing of it is in flight)."""
        for stage_type in self.fed.get(source.task_type, ()):
            self._maybe_complete(stage_type)

    def reopen(self, source_type: str) -> None:
        """``source_type`` makes an item again (an operator re-drove a failed one): the
        stages it feeds, and theirs, are not complete until it has finished again."""
        for stage_type in self.fed.get(source_type, ()):
            stage = self.s.tasks[stage_type]
            if not (stage.task.is_complete or stage.finished):
                continue
            stage.task.is_complete = False
            if stage.finished:
                stage.finished, stage.active = False, True
                self.s.journal.reopened(stage_type)
            self.reopen(stage_type)

    def _maybe_complete(self, task_type: str) -> None:
        state = self.s.tasks[task_type]
        if not state.task.is_complete and self.ready_to_complete(task_type):
            state.task.is_complete = True
            self.s.check_finished(state)

    # -- pushed items (the push endpoint's decisions; see zmqpipeline.distributor.push) --

    def push(self, task_type: str, items: list[dict[str, Any]]) -> int:
        """Take as many of ``items`` as the backlog has room for; return how many. Raises
        ``ValueError`` with the reason when the task takes no pushed items at all."""
        self._check_pushable(task_type)
        backlog = self.backlog[task_type]
        room = max(0, self.bound - len(backlog))
        taken = items[:room]
        self.enter(self.s.tasks[task_type], taken)
        self.counts[task_type]["pushed"] += len(taken)
        return len(taken)

    def close_stream(self, task_type: str) -> None:
        """No more items will be pushed into ``task_type``: it completes once drained."""
        self._check_pushable(task_type)
        self.closed.add(task_type)
        self.s.journal.closed(task_type)
        self._maybe_complete(task_type)

    def _check_pushable(self, task_type: str) -> None:
        s = self.s
        if task_type not in s.tasks:
            known = ", ".join(sorted(self.open_ended)) or "none"
            raise ValueError(f"no task {task_type!r} in this run (open-ended tasks: {known})")
        if task_type not in self.open_ended:
            raise ValueError(f"task {task_type} is not open-ended: it takes no pushed items")
        state = s.tasks[task_type]
        if task_type in self.closed or state.finished or s.done:
            raise ValueError(f"task {task_type} is closed: it takes no more items")
        if s.draining:
            raise ValueError(f"the run is draining: task {task_type} takes no more items")
