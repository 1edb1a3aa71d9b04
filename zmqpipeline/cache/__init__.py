"""The result cache: an item whose task's code and payload did not change since its result
was collected is not run again; its stored result is collected instead (see
docs/guides/caching.md). :class:`Cache` is what a Task names; :mod:`.store` the SQLite
file, :mod:`.key` the key, :mod:`.book` the distributor's side."""

from __future__ import annotations

from .book import CACHE_WORKER
from .cache import DEFAULT_MAX_BYTES, FILE_NAME, RUN, Cache
from .store import CacheError, CacheStore

__all__ = [
    "CACHE_WORKER",
    "DEFAULT_MAX_BYTES",
    "FILE_NAME",
    "RUN",
    "Cache",
    "CacheError",
    "CacheStore",
]
