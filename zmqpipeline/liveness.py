"""How the distributor notices what went wrong, apart from its sockets: silent workers,
items over their time limit, retries and failures for good. A part of
:class:`~zmqpipeline.scheduler.Scheduler` (a mixin: its methods run on the scheduler)."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from . import protocol
from .journal import RunJournal
from .resume import TaskResume
from .settings import Settings
from .stages import StageBook
from .state import COLLECTOR, Item, TaskState, WorkerRecord

__all__ = ["Liveness", "SchedulerBase"]

logger = logging.getLogger("zmqpipeline.distributor")


class SchedulerBase:
    """What every part of the scheduler holds (set by ``Scheduler.__init__``)."""

    settings: Settings
    run: int
    tasks: dict[str, TaskState]
    workers: dict[bytes, TaskState]  # worker id -> its task
    outbox: list[tuple[str, bytes | None, list[bytes]]]
    codec: protocol.Codec
    metadata: dict[str, Any] | None
    done: bool
    collector_id: bytes | None
    last_tick: float | None
    worker_log: dict[bytes, dict[str, Any]]
    paused: bool
    draining: bool
    rates: dict[str, deque[tuple[float, int]]]
    journal: RunJournal
    resuming: dict[str, TaskResume]
    stages: StageBook

    @property
    def started(self) -> bool:
        return self.metadata is not None

    def _check_finished(self, state: TaskState) -> None:
        raise NotImplementedError


class Liveness(SchedulerBase):
    """Liveness, retries and failures of the :class:`~zmqpipeline.scheduler.Scheduler`."""

    # -- time ---------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Declare silent workers dead and re-issue items over their time limit.

        If this process itself was stalled since the last tick, the silence was ours: every
        worker gets that time back before anyone is judged.
        """
        last, self.last_tick = self.last_tick, now
        for task_type, task_state in self.tasks.items():
            self.rates[task_type].append((now, task_state.collected))
        if self.done:
            return  # workers leave as they get END: nothing to re-issue any more
        stalled = 0.0 if last is None else now - last - 2 * self.settings.heartbeat_interval_s
        deadline = now - self.settings.liveness_s
        for state in self.tasks.values():
            for worker in list(state.workers.values()):
                if stalled > 0:
                    worker.last_seen += stalled
                elif worker.last_seen < deadline:
                    self._remove_worker(state, worker, reason="worker died", now=now)
            if state.active:
                self._expire_items(state, now, stalled)

    def _expire_items(self, state: TaskState, now: float, stalled: float) -> None:
        limit = state.task.item_time_limit_s or state.timer.limit_s
        for item in list(state.in_flight.values()):
            if stalled > 0:
                item.sent_at += stalled
            elif item.worker is not None and now - item.sent_at > limit:
                worker = state.workers.get(item.worker)
                if worker is not None:
                    # Its results do not reach the collector (a cut link?): it must earn
                    # trust again, item by item, before it holds more than one, and
                    # before items whose workers failed go to it.
                    worker.completed = 0
                    worker.overdue = True
                self._unassign(state, item)
                self._retry(state, item, f"no ACK within {limit:.1f} s", now, user_error=False)

    def heartbeats(self) -> None:
        """Tell every worker we are alive, and PING the collector (it answers HELLO)."""
        self.outbox.append((COLLECTOR, None, self.codec.ping(self.run)))
        if self.done:
            return
        beat = self.codec.alive()
        for state in self.tasks.values():
            for wid in state.workers:
                self.outbox.append((state.endpoint, wid, beat))

    def worker_unreachable(self, wid: bytes, now: float) -> None:
        """A send to ``wid`` failed: its connection is gone."""
        state = self.workers.get(wid)
        if state is not None and not self.done:
            self._remove_worker(state, state.workers[wid], reason="worker went away", now=now)

    def next_wakeup(self, now: float) -> float | None:
        """Earliest time a delayed retry becomes ready (``None`` if none is waiting)."""
        times = [s.retry[0][0] for s in self.tasks.values() if s.active and s.retry]
        return min(times) if times else None

    # -- failures ---------------------------------------------------------------------

    def _unassign(self, state: TaskState, item: Item) -> None:
        if item.worker is not None:
            worker = state.workers.get(item.worker)
            if worker is not None:
                worker.held.discard(item.seq)
            item.worker = None

    def _remove_worker(
        self, state: TaskState, worker: WorkerRecord, reason: str | None, now: float
    ) -> None:
        del state.workers[worker.wid]
        self.workers.pop(worker.wid, None)
        if reason is None:
            logger.info("worker %s left", worker.wid.decode(errors="replace"))
            return
        entry = self.worker_log.get(worker.wid)
        if entry is not None:
            entry["lost"] = reason  # the status lists it as lost, the report says why
        logger.warning(
            "%s: %s (task %s), re-issuing its %d item(s)",
            reason,
            worker.wid.decode(errors="replace"),
            state.task_type,
            len(worker.held),
        )
        for seq in sorted(worker.held):
            item = state.in_flight.get(seq)
            if item is not None:
                item.worker = None
                self._retry(state, item, reason, now, user_error=False)
        worker.held.clear()

    def _retry(
        self, state: TaskState, item: Item, error: str, now: float, user_error: bool
    ) -> None:
        """Hand ``item`` out again, or fail it when its tries are used up. User-code errors
        and deaths (a worker died, a time limit passed) are counted apart."""
        if user_error:
            item.attempts += 1
            limit = state.task.max_attempts or self.settings.max_attempts
            if item.attempts >= limit:
                self._fail(state, item, error)
                return
            base = state.task.retry_backoff_s
            base = self.settings.retry_backoff_s if base is None else base
            delay = min(base * 2 ** (item.attempts - 1), self.settings.retry_backoff_max_s)
            state.retry.append((now + delay, item.seq))
        else:
            item.deaths += 1
            if item.deaths >= self.settings.max_deaths:
                self._fail(state, item, f"{error} ({item.deaths} times)")
                return
            state.suspect.append(item.seq)
        state.retries += 1

    def _fail(self, state: TaskState, item: Item, error: str) -> None:
        """``item`` failed for good: record it, tell the collector it will not come."""
        del state.in_flight[item.seq]
        state.failed.append(
            record := {
                "task_type": state.task_type,
                "seq": item.seq,
                "item_id": f"{state.task_type}/{item.seq}",
                "attempts": item.attempts,
                "deaths": item.deaths,
                "error": error,
                "data": item.payload,
            }
        )
        self.journal.failed(record)
        logger.error(
            "item %s/%d failed for good (%d error(s), %d death(s)): %s",
            state.task_type,
            item.seq,
            item.attempts,
            item.deaths,
            error.strip().splitlines()[-1:],
        )
        self.outbox.append((COLLECTOR, None, self.codec.skip(self.run, state.task_type, item.seq)))
        self._check_finished(state)
