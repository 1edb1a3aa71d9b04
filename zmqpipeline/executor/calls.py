"""The executor's table of calls, shared by the caller's threads, the feeder, the
collector and the distributor: what waits to be handed to the distributor, what is out,
and each call's future, resolved exactly once.

A call waits in :attr:`Calls.queue` (its future still cancellable) until the feeder takes
it into the *window*, the calls handed to the distributor and not yet resolved; then its
future runs and cannot be cancelled. The window is bounded, so the distributor's backlog
stays under its bound and ``cancel()`` has something to cancel.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import BrokenExecutor, Future
from dataclasses import dataclass, field
from typing import Any

from .errors import from_failure_text, rebuild

__all__ = ["Call", "Calls"]


@dataclass(slots=True)
class Call:
    """One item: its payload for the worker, its future, whether it is a chunk of ``map``."""

    payload: dict[str, Any]
    future: Future[Any]
    chunk: bool = False


@dataclass
class Calls:
    """The table (see the module's text); every method is safe from any thread."""

    window: int
    cond: threading.Condition = field(default_factory=threading.Condition)
    queue: deque[Call] = field(default_factory=deque)
    out: dict[int, Call] = field(default_factory=dict)
    closed: bool = False
    broken: str = ""
    _failures_seen: int = 0

    def add(self, call: Call) -> None:
        with self.cond:
            if self.closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self.broken:
                raise BrokenExecutor(self.broken)
            self.queue.append(call)
            if len(self.queue) == 1:
                self.cond.notify_all()

    def take(self, most: int) -> tuple[list[dict[str, Any]], bool]:
        """For the feeder: wait for calls and room in the window; take up to ``most``
        (their futures now run). ``(payloads, closing)``: ``closing`` once the executor is
        shut down and nothing more waits."""
        with self.cond:
            while not self.broken and (
                (not self.queue and not self.closed)
                or (self.queue and len(self.out) >= self.window)
            ):
                self.cond.wait()
            if self.broken:
                return [], True
            taken: list[dict[str, Any]] = []
            room = min(most, self.window - len(self.out))
            queue, out = self.queue, self.out
            while queue and len(taken) < room:
                call = queue.popleft()
                if call.future.set_running_or_notify_cancel():
                    out[call.payload["i"]] = call
                    taken.append(call.payload)
            return taken, self.closed and not queue

    def cancel_waiting(self) -> None:
        """``shutdown(cancel_futures=True)``: cancel every call not handed out."""
        with self.cond:
            waiting, self.queue = list(self.queue), deque()
            self.cond.notify_all()
        for call in waiting:
            call.future.cancel()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def resolve(self, outcome: dict[str, Any]) -> None:
        """A worker's outcome of one item (the collector calls this, once per item)."""
        with self.cond:
            call = self.out.pop(outcome.get("i"), None)  # type: ignore[arg-type]
            if call is None:
                return  # not ours, or already resolved (a failed item collected late)
            if len(self.out) == self.window - 1:
                self.cond.notify_all()
        future, error = call.future, outcome.get("x")
        if call.chunk:  # the packed results, read by map in the thread that reads them
            packed = outcome.get("r") or b""
            future.set_result(
                (packed, None if error is None else rebuild(error), outcome.get("d", 0.0))
            )
        elif error is not None:
            future.set_exception(rebuild(error))
        else:
            future.set_result(outcome.get("r"))

    def failed(self, records: list[dict[str, Any]]) -> None:
        """The run's items failed for good so far (cumulative): resolve the new ones."""
        new = records[self._failures_seen :]
        self._failures_seen = len(records)
        for record in new:
            data = record.get("data") or {}
            with self.cond:
                call = self.out.pop(int(data.get("i", -1)), None)
                self.cond.notify_all()
            if call is None:
                continue
            exc = from_failure_text(str(record.get("error", "")))
            if call.chunk:
                call.future.set_result((b"", exc, 0.0))
            else:
                call.future.set_exception(exc)

    def break_all(self, reason: str) -> None:
        """The executor cannot go on: every future not resolved gets ``BrokenExecutor``."""
        with self.cond:
            if not self.broken:
                self.broken = reason
            calls = [*self.queue, *self.out.values()]
            self.queue.clear()
            self.out.clear()
            self.cond.notify_all()
        for call in calls:
            if not call.future.done():
                call.future.set_exception(BrokenExecutor(reason))
