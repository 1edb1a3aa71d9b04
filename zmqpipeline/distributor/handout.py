"""How the distributor hands out work, apart from its sockets: credit, windows, the fair
tail, new items from tasks (stages, resumed runs). A part of the ``Scheduler``."""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

from ..errors import MessageTooLarge, SerializationError
from ..protocol.frames import FRAME_MIN_BYTES, frame_bytes
from ..runtime.checks import check_flag_name
from ..runtime.runtime import user_code_error
from ..task import Task
from ..utils.messages import MESSAGE_TYPE_DATA
from .failures import unsendable
from .resume import TaskResume
from .shares import another_takes, any_proven, burst_share, fair_share, load, share_of
from .state import Item, SchedulerPart, TaskState, WorkerRecord

__all__ = ["HandOut"]

logger = logging.getLogger("zmqpipeline.distributor")
task_logger = logging.getLogger("zmqpipeline.task")
_NOTHING = object()  # _call_handle made no item
_STOP = object()  # _next_retry: hand this worker nothing now


class HandOut(SchedulerPart):
    """Handing out work: one part of the scheduler, which it holds."""

    # -- handing out work ---------------------------------------------------------------

    def dispatch(self, now: float, newcomers_first: bool = False) -> bool:
        """Give every confirmed worker with credit as many items as its window allows.

        Nothing goes out before a collector has said HELLO: results would only wait in it.
        With ``newcomers_first``, workers that have had no item yet get one per thread
        first and it returns ``True``: send those and call it again (the last of 100
        new workers then starts after 100 items are made, not after 2 000).
        """
        if not self.s.started or self.s.done or self.s.collector_id is None or self.s.paused:
            return False
        initial = self.s.settings.initial_window
        if newcomers_first and self._feed_newcomers(now, initial):
            return True
        for state in self.s.tasks.values():
            if not state.active or not state.workers:
                continue
            workers = [w for w in state.workers.values() if w.confirmed and w.credit > 0]
            if not workers:
                continue
            start = state.rotation % len(workers)
            state.rotation += 1
            workers = workers[start:] + workers[:start]
            if state.task.sources or state.task.open_ended:
                # Items come a few at a time (a source's results, pushes): the least
                # loaded worker first (shares.load), or one queues them while another starves.
                workers.sort(key=lambda w: load(w) / w.threads)
            share = fair_share(state)
            spread = self._spread(state)
            for worker in workers:
                held = len(worker.held)
                room = min(worker.credit, worker.window(initial) - held)
                if share is not None:  # near the end of a task of known size
                    room = min(room, share_of(worker, share) - held)
                if spread is not None:  # a burst (jobs due at once) split evenly
                    room = min(room, math.ceil(spread * worker.threads) - load(worker))
                items = self._take(state, worker, room, now)
                if items:
                    self._send_items(state, worker, items, now)
                elif room > 0 and not (state.suspect or state.retry or state.has_frames):
                    break  # nothing more to hand out to anyone (not: this one's bytes are full)
            self._rebalance(state)
            self.s.check_finished(state)
        return False

    def _spread(self, state: TaskState) -> float | None:
        """A stage's or an open-ended task's share per thread (:func:`.shares.burst_share`)
        while items wait in its backlog; ``None`` otherwise."""
        backlog = self.s.stages.backlog.get(state.task_type)
        if backlog is None:
            return None
        return burst_share(state, len(backlog) + len(state.retry) + len(state.suspect))

    def _feed_newcomers(self, now: float, initial: int) -> bool:
        """Each worker that has had no item yet gets one per thread. (Later on a worker
        that runs dry is filled at once: two messages would cost more than they save.)"""
        fed = False
        for state in self.s.tasks.values():
            if not state.active:
                continue
            for worker in state.workers.values():
                if not worker.confirmed or worker.credit <= 0 or worker.held or worker.completed:
                    continue
                room = min(worker.credit, worker.window(initial), worker.threads)
                if room > 0:
                    items = self._take(state, worker, room, now)
                    if items:
                        self._send_items(state, worker, items, now)
                        fed = True
        return fed

    def _rebalance(self, state: TaskState) -> None:
        """A fair tail: once the task makes no new items, the worker that would finish
        last (most held per thread) is asked (RECALL) to hand back the unstarted items
        that would let it and the least loaded worker finish together. Asked as soon as
        the task is complete, while both are still busy, so no worker idles waiting for
        the answer (a worker reads between items, not during them)."""
        if not state.task.is_complete or state.retry or state.suspect or state.has_frames:
            return  # (big items: moving one again costs more than the tail it evens out)
        workers = [w for w in state.workers.values() if w.confirmed]
        if len(workers) < 2:
            return
        # Not to one whose items ran over their time limit (cut off from the collector?):
        # what it is given may not come back for a whole limit.
        takers = [w for w in workers if w.credit > 0 and not w.overdue]
        if not takers:
            return
        least = min(takers, key=lambda w: len(w.held) / w.threads)
        # Not one that just said it has started everything it holds (until it gets more).
        givers = [w for w in workers if w.started_all_at is None or len(w.held) > w.started_all_at]
        if not givers:
            return
        busiest = max(givers, key=lambda w: len(w.held) / w.threads)
        if busiest is least or busiest.recalling:
            return
        # n such that (held_b - n) / threads_b == (held_l + n) / threads_l
        even = (len(busiest.held) * least.threads - len(least.held) * busiest.threads) // (
            least.threads + busiest.threads
        )
        n = min(even, len(busiest.held) - busiest.threads, least.credit)
        if n > 0:
            busiest.recalling = True
            self.s.outbox.append((state.endpoint, busiest.wid, self.s.codec.recall(n)))

    def _take(self, state: TaskState, worker: WorkerRecord, room: int, now: float) -> list[Any]:
        """Up to ``room`` items for ``worker``, as ``[seq, payload]``: items to retry first,
        then new ones (made in one go: every item's path)."""
        taken: list[Item] = []
        budget = self._bytes_room(state, worker) if state.has_frames else None
        while room > len(taken) and (state.suspect or state.retry):
            if budget is not None and budget <= 0:
                return self._handed(worker, taken, now)
            item = self._next_retry(state, worker, now)
            if item is _STOP:
                room = 0  # it handed back the next one: another worker takes it first
            elif item is None:
                break
            else:
                taken.append(item)
                if budget is not None:
                    budget -= item.nbytes
        if room > len(taken) and (budget is None or budget > 0):
            made = self._new_items(state, worker.wid, room - len(taken), now, budget)
            self.s.cache.send(state, now)  # the results it found in the cache instead
        else:
            made = []
        return self._handed(worker, taken, now, made)

    def _handed(
        self, worker: WorkerRecord, taken: list[Item], now: float, made: list[Item] | None = None
    ) -> list[Any]:
        """``taken`` (items going out again) and ``made`` (new ones) handed to ``worker``."""
        wid = worker.wid
        for item in taken:
            item.worker = wid
            item.sent_at = now
            if not item.first_sent_at:  # one a resumed run hands out again (a re-drive)
                item.first_sent_at = now
        taken += made or []
        if not taken:
            return []
        worker.held.update([item.seq for item in taken])
        worker.credit -= len(taken)
        self.s.worker_log[wid]["handed_out"] += len(taken)
        return [[item.seq, item.payload] for item in taken]

    def _send_items(
        self, state: TaskState, worker: WorkerRecord, items: list[list[Any]], now: float
    ) -> None:
        """Send a batch with its tokens (:mod:`~zmqpipeline.protocol.tokens`); if it would
        not pack, send its items singly and fail those that cannot go at all."""
        codec, run, task_type = self.s.codec, self.s.run, state.task_type
        tokens = functools.partial(self.s.tokens.tokens, task_type, worker.wid)
        try:
            if state.has_frames:  # big values go as frames, an item a message
                for frames in codec.data_framed(run, items, task_type, tokens):
                    self.s.outbox.append((state.endpoint, worker.wid, frames))
            else:
                blob = b"".join(self.s.tokens.tokens(task_type, worker.wid, [i[0] for i in items]))
                frames = codec.data(run, items, task_type, blob)
                if len(frames[1]) >= FRAME_MIN_BYTES:  # big values: weigh and frame from now
                    state.has_frames = True
                self.s.outbox.append((state.endpoint, worker.wid, frames))
            return
        except (SerializationError, MessageTooLarge):
            pass
        for seq, payload in items:
            try:
                messages = codec.data_framed(run, [[seq, payload]], task_type, tokens)
            except (SerializationError, MessageTooLarge) as exc:
                item = state.in_flight[seq]
                state.unassign(item)
                worker.credit += 1
                error = unsendable(state.task_type, seq, payload, exc)
                self.s.failures.item_failed(state, item, error)
            else:
                self.s.outbox.extend((state.endpoint, worker.wid, m) for m in messages)

    def _next_retry(self, state: TaskState, worker: WorkerRecord, now: float) -> Any:
        """The next item to hand out again to ``worker``: ``None`` if none is due (new
        items may go), ``_STOP`` if the one due was handed back by it (nothing may go)."""
        # Items whose workers died go first, but only to a worker that has completed
        # items (if the task has one): a peer that takes items and vanishes gets new
        # ones, never the same ones again and again.
        if state.suspect and (worker.completed or not any_proven(state)):
            while state.suspect:
                item = state.in_flight.get(state.suspect.popleft())
                if item is not None and item.worker is None:
                    return item
        while state.retry and state.retry[0][0] <= now:
            item = state.in_flight.get(state.retry[0][1])
            if item is not None and item.avoid == worker.wid and another_takes(state, worker):
                return _STOP  # it handed this one back: another worker takes it
            state.retry.popleft()
            if item is not None and item.worker is None:
                return item
        return None

    def _bytes_room(self, state: TaskState, worker: WorkerRecord) -> int | None:
        """Bytes of big values ``worker`` may still be handed (``None``: no bound): its
        share of ``max_in_flight_bytes`` among the task's workers, within the task's."""
        limit = self.s.settings.max_in_flight_bytes
        if not limit:
            return None
        in_flight = state.in_flight
        total = sum(item.nbytes for item in in_flight.values())
        held = sum(in_flight[seq].nbytes for seq in worker.held if seq in in_flight)
        workers = sum(1 for w in state.workers.values() if w.confirmed) or 1
        return min(limit // workers - held, limit - total)

    def _new_items(
        self, state: TaskState, wid: bytes, room: int, now: float, budget: int | None = None
    ) -> list[Item]:
        """Up to ``room`` new items for ``wid``, handed out ``now``; every item's path."""
        task = state.task
        if task.is_complete or state.held_back or self.s.draining:
            return []
        in_flight = state.in_flight
        room = min(room, self.s.settings.max_in_flight - len(in_flight))
        stages, task_type, cap = self.s.stages, state.task_type, self.s.settings.max_in_flight
        blocking = bool(stages.fed) and task_type in stages.fed
        from_backlog = bool(stages.backlog) and stages.feeds_from_backlog(task_type)
        resume, record = self.s.resuming.get(task_type), self.s.journal.records
        metadata = self.s.metadata or {}
        caching = task_type in self.s.cache.task_types  # the result cache: _take sends
        # Task's own is_available_for_handling says yes to every item: not called for each.
        asks = (
            type(task).is_available_for_handling is not Task.is_available_for_handling
            or "is_available_for_handling" in task.__dict__
        )
        made: list[Item] = []
        payload: dict[str, Any] | None
        while len(made) < room and not task.is_complete and (budget is None or budget > 0):
            if blocking and stages.blocked(state.task_type, len(in_flight)):
                break  # backpressure: a stage it feeds has a full backlog
            if asks and not self._available(state):
                break
            if from_backlog:  # a stage or an open-ended task: its items have their seqs
                taken = stages.take(state)
                if taken is None:
                    break
                seq, payload = taken
            else:
                if resume is None:  # every item's path: handle() called here directly
                    try:
                        payload = task.handle(metadata, wid, MESSAGE_TYPE_DATA)
                    except Exception as exc:
                        self._raised(state, exc, "handle")
                        break
                    if type(payload) is not dict:
                        payload = self._checked(state, payload)  # None: not an item
                else:
                    payload = self._from_resume(state, wid, resume)
                if payload is None:
                    break
                seq = state.next_seq  # (a backlog's items have theirs)
                state.next_seq = seq + 1
                if record:
                    self.s.journal.handed_out(state.task_type, seq)
            # worker, attempts, deaths, sent_at, first_sent_at: handed out now
            item = in_flight[seq] = Item(seq, payload, wid, 0, 0, now, now)
            if caching and self.s.cache.serve(state, item):  # cache: its result goes, not the item
                room = min(room, len(made) + cap - len(in_flight))
                continue
            made.append(item)
            if payload:  # its big values, and a key no worker decodes (an empty one: none)
                budget = self._weigh(state, item, wid, budget)
        self._after_batch(state)
        return made

    def _available(self, state: TaskState) -> bool:
        """The task's ``is_available_for_handling``: may its next item go out now?"""
        try:
            available = state.task.is_available_for_handling(state.last_ack_data)
        except Exception as exc:
            self._raised(state, exc, "is_available_for_handling")
            return False
        if not available:
            state.held_back = True
        return bool(available)

    def _after_batch(self, state: TaskState) -> None:
        """What is asked once a batch: more items than the task declares? A new attribute
        of the task (a typo of a flag)?"""
        if state.size is not None and state.next_seq > state.size:
            _over_its_size(state)
        if len(state.task.__dict__) != state.task_names:
            self._check_flags(state)

    def _check_flags(self, state: TaskState) -> None:
        """A new attribute of the task that is a typo of a flag the distributor reads
        (``self.is_completed = True``) fails the task, naming the flag: it would otherwise
        hand out items for ever. Asked once per batch, when the task gained a name."""
        task = state.task
        state.task_names = len(task.__dict__)
        for name in list(task.__dict__):
            try:
                check_flag_name(type(task), name)
            except AttributeError as exc:
                self.s.failures.task_code_failed(state, f"AttributeError: {exc}", "handle")
                return

    def _weigh(self, state: TaskState, item: Item, wid: bytes, budget: int | None) -> int | None:
        """An item with big values weighs against ``max_in_flight_bytes``: what is left.
        The walk also finds a dict key no worker decodes, or a list too long for one: the
        item-by-item path fails that item at once."""
        try:
            nbytes = frame_bytes(item.payload)
        except SerializationError:  # a key no worker decodes: the item-by-item path
            state.has_frames = True  # fails it alone, at once (see _send_items)
            return budget
        if nbytes:
            if budget is None:
                state.has_frames = True
                budget = self._bytes_room(state, state.workers[wid])
            if budget is not None:
                budget -= nbytes
            item.nbytes = nbytes
        return budget

    def _raised(self, state: TaskState, exc: Exception, where: str) -> None:
        raised = user_code_error(task_logger, f"Task.{where}", exc)
        self.s.failures.task_code_failed(state, raised.text, where)

    def _from_resume(
        self, state: TaskState, wid: bytes, resume: TaskResume
    ) -> dict[str, Any] | None:
        """A resumed task's next item (``None``: it raised, made none, or no dict)."""
        payload = self._call_handle(state, wid, resume)
        return None if payload is _NOTHING else self._checked(state, payload)

    def _checked(self, state: TaskState, payload: Any) -> dict[str, Any] | None:
        """What ``handle`` returned as an item (``None``: not a dict, a failure)."""
        if payload is None:
            return {}
        if isinstance(payload, dict):
            return payload
        error = (
            f"TypeError: {type(state.task).__name__}.handle() must return a dict or None, "
            f"not {type(payload).__name__}"
        )
        self.s.failures.task_code_failed(state, error, "handle")
        return None

    def _call_handle(self, state: TaskState, wid: bytes, resume: TaskResume) -> Any:
        """The next item of a resumed run's task from ``handle`` (``_NOTHING`` if it raised,
        or if nothing is left to make). Items collected before a crash are made again and
        skipped, not sent."""
        task = state.task
        metadata = self.s.metadata or {}
        while True:
            try:
                payload = task.handle(metadata, wid, MESSAGE_TYPE_DATA)
            except Exception as exc:
                raised = user_code_error(task_logger, "Task.handle", exc)
                self.s.failures.task_code_failed(state, raised.text, "handle")
                return _NOTHING
            while state.next_seq in resume.redriven:  # an operator's, not handle()'s
                state.next_seq += 1
            if not resume.skip(state.next_seq):
                return payload
            state.next_seq += 1  # collected before the crash: made again, not sent
            if task.is_complete:
                return _NOTHING


def _over_its_size(state: TaskState) -> None:
    """Say once that a task hands out more items than it declares."""
    if not state.oversize_told:
        state.oversize_told = True
        logger.warning(
            "task %s declares %d item(s) but has handed out %d and has not set is_complete: "
            "set self.is_complete = True with the last item",
            state.task_type,
            state.size,
            state.next_seq,
        )
