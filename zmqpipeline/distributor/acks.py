"""What the distributor does with the collector's ACKs: items leave ``in_flight``, their
results feed the stages, their times the task's time limit, and tasks finish. One part of
the :class:`~zmqpipeline.distributor.scheduler.Scheduler`, which it holds."""

from __future__ import annotations

import logging
from itertools import repeat
from typing import TYPE_CHECKING, Any

from ..cache.nocache import CACHE_WORKER
from .state import Item, SchedulerPart, TaskState

if TYPE_CHECKING:
    pass

__all__ = ["Acks"]

logger = logging.getLogger("zmqpipeline.distributor")


class Acks(SchedulerPart):
    """The collector's ACKs, every item's path once."""

    def on_ack(self, groups: list[list[Any]], now: float) -> None:
        # An ACK comes in groups of one task type and one worker (protocol.ack_group):
        # what a group shares is looked up and counted once.
        s = self.s
        touched: dict[str, TaskState] = {}
        s.last_ack_at = now
        for group in groups:
            state = s.tasks.get(group[0])
            if state is None:
                s.stale_acks += len(group[2])
            elif self._group(state, group, now):
                touched[state.task_type] = state
        for state in touched.values():
            s.check_finished(state)

    def _group(self, state: TaskState, group: list[Any], now: float) -> bool:
        """One group's items; ``True`` if any was in flight."""
        s = self.s
        task_type, executed_by, seqs, ack_data, errors, results, firsts = group
        n = len(seqs)
        rows = zip(
            seqs,
            ack_data or repeat(None, n),
            errors or repeat(None, n),
            results or repeat(None, n),
            firsts or repeat(True, n),
            strict=True,
        )
        journal = s.journal if s.journal.records else None
        latencies, fed = s.latencies, task_type in s.stages.fed
        # The result cache: a miss's result is kept; a hit (from the cache) is counted.
        cached = executed_by == CACHE_WORKER
        caching = not cached and task_type in s.cache.task_types
        jobs = task_type in s.recurring.books  # a scheduled task (.recurring)
        in_flight, workers = state.in_flight, state.workers
        worker = workers.get(executed_by)
        waits: list[float] = []  # hand-out to ACK, for the task's time limit
        found = False
        last_data = None
        for seq, data, error, result, first in rows:
            item = in_flight.get(seq)
            if item is None:
                if error is None and self._not_in_flight(state, seq, executed_by, result, first):
                    continue
                s.stale_acks += 1
                continue
            found = True
            if error is not None:  # handle_collection raised: try the item again
                state.unassign(item)
                s.liveness.retry(state, item, error, now, user_error=True)
                continue
            del in_flight[seq]
            holder = item.worker
            if holder is not None:  # state.unassign, with the lookup above
                owner = worker if holder == executed_by else workers.get(holder)
                if owner is not None:
                    owner.held.discard(seq)
                item.worker = None
            if journal is not None:
                journal.acked(task_type, seq)
            last_data = data
            waits.append(now - item.sent_at)
            latencies.append(now - item.first_sent_at)
            if (result is not None and (fed or caching)) or jobs:
                self._result(state, item, result, executed_by, now, fed, caching, jobs)
        if waits:
            self._collected(state, executed_by, len(waits), last_data)
            if cached:
                s.cache.collected(state, len(waits))
            state.timer.observe_all(waits)
        return found

    def _result(
        self,
        state: TaskState,
        item: Item,
        result: Any,
        by: bytes,
        now: float,
        fed: bool,
        caching: bool,
        jobs: bool,
    ) -> None:
        """What a collected item's result feeds: the stages, the cache, a job's outcome.
        Its ACK here: once per item. (A duplicate's ACK carries the result too: the first
        may have been lost with a distributor that crashed.)"""
        s = self.s
        if result is not None:
            if fed:
                s.stages.feed(state, item.seq, result)
            if caching:
                s.cache.store(state, item, result)
        if jobs:  # the job's outcome rode on the ACK (.recurring)
            s.recurring.ran(state, item, result, by, now)

    def _collected(self, state: TaskState, by: bytes, n: int, last_data: Any) -> None:
        state.collected += n
        state.last_ack_data = last_data
        state.held_back = False
        worker = state.workers.get(by)
        if worker is not None:
            worker.completed += n
        log = self.s.worker_log.get(by)
        if log is not None:
            log["collected"] += n

    def _not_in_flight(
        self, state: TaskState, seq: Any, executed_by: bytes, result: Any, first: bool
    ) -> bool:
        """An ACK of an item not in flight that counts all the same (``False``: a stale
        one, a duplicate's re-ACK)."""
        if self._late_ack(state, seq, result):
            return True
        # Collected now, not a duplicate's re-ACK: an item we had failed?
        return first and self._collected_after_failing(state, seq, executed_by, result)

    def _collected_after_failing(
        self, state: TaskState, seq: Any, executed_by: bytes, result: dict[str, Any] | None
    ) -> bool:
        """The collector collected an item we had failed for good (its result came in
        before our SKIP, over a link that stayed up while ours to the collector was
        down): it is collected, not failed, and the stages it feeds get its result."""
        s = self.s
        record = next((f for f in state.failed if f["seq"] == seq), None)
        if record is None:
            return False
        state.failed.remove(record)
        state.collected += 1
        log = s.worker_log.get(executed_by)
        if log is not None:
            log["collected"] += 1
        s.journal.unfailed(record)
        logger.warning(
            "item %s was collected after it had failed for good: counted as collected",
            record["item_id"],
        )
        if result is not None and state.task_type in s.stages.fed and not s.done:
            s.stages.reopen(state.task_type)
            s.stages.feed(state, seq, result)
            if state.finished:
                s.stages.source_finished(state)  # nothing more comes: the stages may complete
        return True

    def _late_ack(self, state: TaskState, seq: Any, result: dict[str, Any] | None) -> bool:
        """A resumed run: an ACK of an item handed out before the crash and not made
        again yet. Note it as done, so it is skipped when ``handle`` makes it; its result
        feeds the stages (one that comes without would be lost: it is made again)."""
        s = self.s
        resume = s.resuming.get(state.task_type)
        if resume is None or not isinstance(seq, int) or seq < state.next_seq:
            return False
        if seq in resume.redriven:  # a re-drive: in flight as it is, its ACK counted there
            return False
        fed = state.task_type in s.stages.fed
        if fed and result is None:
            return False
        if seq not in resume.done:
            resume.done.add(seq)
            state.collected += 1
            s.journal.acked(state.task_type, seq)
            if result is not None:  # fed: it has one
                s.stages.feed(state, seq, result)
        return True
