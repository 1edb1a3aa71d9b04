"""The result cache: an item whose task's code and payload did not change since its result
was collected is not run again; its stored result is collected instead (see
docs/guides/caching.md). :class:`Cache` is what a Task names; :mod:`.store` the SQLite
file, :mod:`.key` the key, :mod:`.book` the distributor's side."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..utils.lazy import lazy_names

if TYPE_CHECKING:
    from .cache import DEFAULT_MAX_BYTES, FILE_NAME, RUN, Cache
    from .nocache import CACHE_WORKER
    from .store import CacheError, CacheStore

# Imported on first use: every distributor imports .nocache; SQLite and the key's hashing
# only a run whose tasks name a Cache.
__getattr__ = lazy_names(
    __name__,
    {
        "CACHE_WORKER": ".nocache",
        "DEFAULT_MAX_BYTES": ".cache",
        "FILE_NAME": ".cache",
        "RUN": ".cache",
        "Cache": ".cache",
        "CacheError": ".store",
        "CacheStore": ".store",
    },
    globals(),
)

__all__ = [
    "CACHE_WORKER",
    "DEFAULT_MAX_BYTES",
    "FILE_NAME",
    "RUN",
    "Cache",
    "CacheError",
    "CacheStore",
]
