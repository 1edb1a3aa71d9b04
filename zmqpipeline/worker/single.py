"""``SingleThreadedWorker``: executes one item at a time in the process's own thread, on
the loop of :class:`~zmqpipeline.worker.worker.Worker`."""

from __future__ import annotations

import logging
import time

from ..runtime.runtime import user_code_error
from .worker import Worker

__all__ = ["SingleThreadedWorker"]

logger = logging.getLogger("zmqpipeline.worker")


class SingleThreadedWorker(Worker):
    """Executes one item at a time in the process's own thread.

    Implement ``handle_execution(self, data, *args, **kwargs)``: ``data`` is the dict the
    task handed out; return a dict for the collector, or ``None``.
    """

    def _work_available(self) -> bool:
        return bool(self._logic.queue) and self._logic.accepted and not self._unsent.full()

    def _work_one(self) -> None:
        # Works through the queue until the loop has something else to do. This is every
        # item's path, kept short: after user code sleeps or waits, each call and each
        # object touched costs microseconds on a core that has just woken. So user code
        # is called here directly (``user_code_error`` is ``call_user``'s except branch)
        # and a result that does not end a batch is appended in place (else ``_hold``).
        logic, batch, stop, clock = self._logic, self.batch, self._rt.stop, time.perf_counter
        queue, handle, credit = logic.queue, self.handle_execution, logic.credit
        last, unsent = batch.max_items - 1, self._unsent
        now = clock()
        while queue and now < self._next_read and not stop.is_set and logic.accepted:
            if unsent.pending and unsent.full():
                return  # big results not yet out: the loop waits for them to leave
            seq, data = queue.popleft()
            logic.busy += 1
            started = clock()
            try:
                result = handle(data)
            except Exception as exc:
                error = user_code_error(logger, "handle_execution", exc, (self.task_type, seq))
                self._failed(seq, clock() - started, error.text, error.exc_types)
                return
            if result is not None and type(result) is not dict:
                try:
                    self.check_result(result)
                except TypeError as exc:
                    self._failed(seq, clock() - started, str(exc), ["TypeError"])
                    return
            now = clock()
            logic.busy -= 1
            credit.observe(now - started)
            items = batch.items
            if (
                items
                and queue
                and now < batch.deadline
                and len(items) < last
                and (batch.run == logic.run)
                and not batch.big
            ):
                items.append((seq, result))
                continue
            self._hold(seq, result, now)
            if self._results or logic.to_distributor:
                return  # a peer did not take everything: the loop sends it

    def _failed(self, seq: int, seconds: float, error: str, exc_types: list[str]) -> None:
        logic = self._logic
        logic.finished(seconds)
        self.items_failed += 1
        logic.fail(seq, error, exc_types)
        self._ask_for_more()
        self._send_pending()
