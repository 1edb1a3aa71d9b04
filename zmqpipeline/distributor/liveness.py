"""How the distributor notices what went wrong, apart from its sockets: silent workers,
items over their time limit, retries and the failures they end in. One part of the
:class:`~zmqpipeline.distributor.scheduler.Scheduler`, which it holds."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .state import COLLECTOR, Item, SchedulerPart, TaskState, WorkerRecord

if TYPE_CHECKING:
    pass

__all__ = ["Liveness"]

logger = logging.getLogger("zmqpipeline.distributor")


class Liveness(SchedulerPart):
    """Liveness, retries and hand-backs of the scheduler's items."""

    # -- time ---------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Declare silent workers dead and re-issue items over their time limit.

        If this process itself was stalled since the last tick, the silence was ours: every
        worker gets that time back before anyone is judged.
        """
        s = self.s
        last, s.last_tick = s.last_tick, now
        for task_type, task_state in s.tasks.items():
            s.rates[task_type].append((now, task_state.collected))
        if s.done:
            return  # workers leave as they get END: nothing to re-issue any more
        stalled = 0.0 if last is None else now - last - 2 * s.settings.heartbeat_interval_s
        deadline = now - s.settings.liveness_s
        for state in s.tasks.values():
            for worker in list(state.workers.values()):
                if stalled > 0:
                    worker.last_seen += stalled
                elif worker.last_seen < deadline:
                    self.remove_worker(state, worker, reason="worker died", now=now)
            if state.active:
                self._expire_items(state, now, stalled)

    def _expire_items(self, state: TaskState, now: float, stalled: float) -> None:
        limit = state.task.item_time_limit_s or state.timer.limit_s
        expired: list[int] = []
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
                state.unassign(item)
                expired.append(item.seq)
                self.retry(state, item, f"no ACK within {limit:.1f} s", now, user_error=False)
        if expired:
            logger.warning(
                "task %s: %d item(s) got no ACK within their time limit of %.1f s (their "
                "results do not reach the collector?); handing them out again: %s",
                state.task_type,
                len(expired),
                limit,
                ", ".join(map(str, expired[:10])) + (" ..." if len(expired) > 10 else ""),
            )

    def heartbeats(self) -> None:
        """Tell every worker we are alive, and PING the collector (it answers HELLO)."""
        s = self.s
        s.outbox.append((COLLECTOR, None, s.codec.ping(s.run)))
        if s.done:
            return
        beat = s.codec.alive()
        for state in s.tasks.values():
            for wid in state.workers:
                s.outbox.append((state.endpoint, wid, beat))

    def worker_unreachable(self, wid: bytes, now: float) -> None:
        """A send to ``wid`` failed: its connection is gone."""
        state = self.s.workers.get(wid)
        if state is None or self.s.done:
            return
        worker = state.workers[wid]
        if not worker.held:  # it left holding nothing (after its last item): no news
            self.remove_worker(state, worker, reason=None, now=now)  # logs "left"
            return
        self.remove_worker(state, worker, reason="worker went away", now=now)

    def next_wakeup(self) -> float | None:
        """Earliest time a delayed retry becomes ready (``None`` if none is waiting)."""
        times = [s.retry[0][0] for s in self.s.tasks.values() if s.active and s.retry]
        return min(times) if times else None

    # -- workers leaving, items going round again ---------------------------------------

    def hand_back(self, state: TaskState, seqs: list[int], now: float, avoid: bytes | None) -> None:
        """``seqs`` go out again first (a worker handed them back, or is leaving); with
        ``avoid``, preferably not to that worker."""
        given = 0
        for seq in seqs:
            item = state.in_flight.get(seq)
            if item is not None and (avoid is None or item.worker == avoid):
                state.unassign(item)
                if avoid is not None:
                    item.avoid = avoid
                    given += 1
                state.retry.appendleft((now, seq))
        log = self.s.worker_log.get(avoid) if given and avoid is not None else None
        if log is not None:  # unstarted: handed out to it, executed by another
            log["handed_back"] += given

    def remove_worker(
        self, state: TaskState, worker: WorkerRecord, reason: str | None, now: float
    ) -> None:
        s = self.s
        del state.workers[worker.wid]
        s.workers.pop(worker.wid, None)
        if reason is None:
            logger.info("worker %s left", worker.wid.decode(errors="replace"))
            return
        entry = s.worker_log.get(worker.wid)
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
                self.retry(state, item, reason, now, user_error=False)
        worker.held.clear()

    def retry(self, state: TaskState, item: Item, error: str, now: float, user_error: bool) -> None:
        """Hand ``item`` out again, or fail it when its tries are used up. User-code errors
        and deaths (a worker died, a time limit passed) are counted apart."""
        settings = self.s.settings
        if user_error:
            item.attempts += 1
            limit = state.task.max_attempts or settings.max_attempts
            if item.attempts >= limit:
                self.s.failures.item_failed(state, item, error)
                return
            base = state.task.retry_backoff_s
            base = settings.retry_backoff_s if base is None else base
            delay = min(base * 2 ** (item.attempts - 1), settings.retry_backoff_max_s)
            state.retry.append((now + delay, item.seq))
        else:
            item.deaths += 1
            if item.deaths >= settings.max_deaths:
                self.s.failures.item_failed(state, item, f"{error} ({item.deaths} times)")
                return
            state.suspect.append(item.seq)
        state.retries += 1
