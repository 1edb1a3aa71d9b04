"""The distributor's side of the result cache: which items are served from it instead of
being handed out, and which results go into it.

An item whose key has a fresh result is not handed out: the distributor sends the
collector a RESULT of its own, from the pseudo-worker :data:`CACHE_WORKER`, on the channel
it already has to the collector. The collector collects it like any result (once per id,
journaled, forwarded to the stages it feeds) and ACKs it; the ACK takes the item out of
flight, as for any item. The collector forwards the results of cached task types on their
first ACK (START's ``forward`` list, as for the sources of stages): a miss's result is
stored when that ACK comes, so only collected results are cached, never a failed item's.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ConfigurationError
from ..utils.serializer import Packer, deserialize
from .cache import Cache
from .key import code_version, item_key, payload_bytes
from .nocache import CACHE_WORKER, NoCache
from .store import CacheError, CacheStore

if TYPE_CHECKING:
    from ..distributor.scheduler import Scheduler
    from ..distributor.state import Item, TaskState

__all__ = ["CACHE_WORKER", "CacheBook", "NoCache", "open_cache"]

logger = logging.getLogger("zmqpipeline.distributor")

#: Results per RESULT the distributor sends: the collector ACKs each RESULT as a whole,
#: so a slow ``handle_collection`` ACKs a few hundred items at a time, within their limit.
CHUNK = 256


class _Entry(NamedTuple):
    cache: Cache
    version: str
    store: CacheStore


class CacheBook(NoCache):
    """The cached tasks of one run: their stores, keys and counts."""

    def __init__(self, scheduler: Scheduler, entries: dict[str, _Entry], channel: str) -> None:
        self.s = scheduler
        self.entries = entries
        self.task_types = frozenset(entries)
        self.channel = channel  # the scheduler's outbox channel to the collector
        self.packer = Packer()
        self.pending: dict[str, list[tuple[int, Any]]] = {}
        self.counts: Counter[str] = Counter()
        self.broken = False

    def _key(self, task_type: str, entry: _Entry, item: Item) -> bytes | None:
        raw = payload_bytes(self.packer, item.payload)
        return None if raw is None else item_key(task_type, entry.version, raw)

    def serve(self, state: TaskState, item: Item) -> bool:
        """``True``: ``item`` has a fresh result, which goes to the collector (at
        :meth:`send`) instead of the item going to a worker."""
        entry = self.entries.get(state.task_type)
        if entry is None or self.broken:
            return False
        key = self._key(state.task_type, entry, item)
        if key is None:
            return False
        cache = entry.cache
        try:
            raw = entry.store.get(key, cache.expire_s, self.s.run if cache.this_run_only else None)
        except CacheError as exc:
            self._broke(exc)
            return False
        if raw is None:
            return False
        item.worker = CACHE_WORKER
        self.pending.setdefault(state.task_type, []).append((item.seq, deserialize(raw)))
        return True

    def send(self, state: TaskState, now: float) -> None:
        """The results served since the last call, to the collector."""
        entries = self.pending.pop(state.task_type, None)
        if not entries:
            return
        s = self.s
        for start in range(0, len(entries), CHUNK):
            chunk = entries[start : start + CHUNK]
            messages, failed = s.codec.results(s.run, state.task_type, CACHE_WORKER, chunk)
            for frames in messages:
                s.outbox.append((self.channel, None, frames))
            if failed:  # too large for a message now: a worker computes it again
                s.liveness.hand_back(state, [seq for seq, _ in failed], now, avoid=None)
        entry = self.entries[state.task_type]
        self._commit(entry.store)

    def store(self, state: TaskState, item: Item, result: dict[str, Any]) -> None:
        """``item``'s result was collected (its first ACK carried it): keep it."""
        entry = self.entries.get(state.task_type)
        if entry is None or self.broken:
            return
        key = self._key(state.task_type, entry, item)
        if key is None:
            return
        try:
            entry.store.put(key, state.task_type, self.packer.pack(result), self.s.run)
            entry.store.maybe_commit()
        except (CacheError, TypeError) as exc:
            self._broke(exc)

    def collected(self, state: TaskState, n: int) -> None:
        """``n`` items served from the cache were ACKed."""
        self.counts[state.task_type] += n

    def summary(self, task_type: str) -> dict[str, Any]:
        """``cached``: the task's items collected from the cache (a part of ``collected``)."""
        return {"cached": self.counts[task_type]} if task_type in self.entries else {}

    def _commit(self, store: CacheStore) -> None:
        try:
            store.maybe_commit()
        except CacheError as exc:
            self._broke(exc)

    def _broke(self, exc: Exception) -> None:
        if not self.broken:
            logger.error("the result cache failed, the run goes on without it: %s", exc)
        self.broken = True

    def close(self, complete: bool) -> None:
        """Commit and release the files; a completed run's results for this run only go."""
        for store in {id(e.store): e.store for e in self.entries.values()}.values():
            try:
                if complete and not self.broken:
                    store.drop_runs(self._run_only(store), keep_run=None)
                store.close()
            except CacheError as exc:
                logger.error("the result cache could not be closed cleanly: %s", exc)

    def _run_only(self, store: CacheStore) -> list[str]:
        return [tt for tt, e in self.entries.items() if e.store is store and e.cache.this_run_only]


def open_cache(scheduler: Scheduler, channel: str) -> NoCache:
    """The cache of ``scheduler``'s run: a :class:`CacheBook` holding one open store per
    cache file its tasks name (a :class:`NoCache` if none names one). Raises
    :class:`~zmqpipeline.cache.CacheError` for a file it cannot use (in use by another
    distributor, damaged, foreign): nothing has run yet."""
    configs: dict[str, tuple[Cache, str]] = {}
    for task_type, state in scheduler.tasks.items():
        cache = getattr(state.task, "cache", None)
        if cache is None:
            continue
        if not isinstance(cache, Cache):
            raise ConfigurationError(
                f"{type(state.task).__name__}.cache must be a zmqpipeline.Cache or None, "
                f"got {cache!r}"
            )
        configs[task_type] = (cache, code_version(type(state.task)))
    if not configs:
        return NoCache()
    stores: dict[str, CacheStore] = {}
    entries: dict[str, _Entry] = {}
    try:
        for task_type, (cache, version) in configs.items():
            path = str(cache.path.resolve())
            if path not in stores:  # tasks sharing a file: the smallest bound holds
                bound = min(
                    c.max_bytes for c, _ in configs.values() if str(c.path.resolve()) == path
                )
                stores[path] = CacheStore(path, bound)
            entries[task_type] = _Entry(cache, version, stores[path])
    except BaseException:
        for store in stores.values():
            store.close()
        raise
    for store in stores.values():  # results for one run only, of runs that are over
        run_only = [tt for tt, e in entries.items() if e.store is store and e.cache.this_run_only]
        store.drop_runs(run_only, keep_run=scheduler.run)
        store.commit()
    return CacheBook(scheduler, entries, channel)
