"""What a run without a result cache holds in its place (:class:`NoCache`, the
distributor's null object) and the pseudo-worker a cache's results come from: all a
distributor imports of :mod:`zmqpipeline.cache` unless a task names a
:class:`~zmqpipeline.Cache` (then :mod:`.book` is the distributor's side)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..distributor.state import Item, TaskState

__all__ = ["CACHE_WORKER", "NoCache"]

#: The "worker" of results served from the cache: the RESULTs the distributor sends and
#: the ACK groups that answer them name it.
CACHE_WORKER = b"\x00cache"


class NoCache:
    """A run without a cache: it pays nothing (the journal's null object is the model)."""

    task_types: frozenset[str] = frozenset()

    def serve(self, state: TaskState, item: Item) -> bool:
        return False

    def send(self, state: TaskState, now: float) -> None:
        pass

    def store(self, state: TaskState, item: Item, result: dict[str, Any]) -> None:
        pass

    def collected(self, state: TaskState, n: int) -> None:
        pass

    def summary(self, task_type: str) -> dict[str, Any]:
        return {}

    def close(self, complete: bool) -> None:
        pass
