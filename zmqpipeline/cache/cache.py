"""``Cache``: what a Task names to have its items' results kept and re-used (the
configuration users write; the store is :mod:`.store`, the key :mod:`.key`)."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

__all__ = ["DEFAULT_MAX_BYTES", "FILE_NAME", "RUN", "Cache"]

#: ``expire=RUN``: a result is fresh for the run that stored it only (a run resumed from
#: its journal included), and removed when that run completes.
RUN = "run"
#: The bound on a cache file's results unless ``max_bytes`` says otherwise (1 GiB).
DEFAULT_MAX_BYTES = 1 << 30
#: The one file a cache keeps in its directory.
FILE_NAME = "zmqpipeline-cache.sqlite"


class Cache:
    """Keep the results of a task's items and collect them again, without running them,
    while neither the item nor the task's code changed.

    Put one on a :class:`~zmqpipeline.Task`: ``cache = zmqpipeline.Cache("cache-dir")``.

    ``directory`` holds one SQLite file, ``zmqpipeline-cache.sqlite`` (made if missing);
    several tasks may share it. ``expire``: ``None`` (never), a number of seconds or a
    ``timedelta`` (a result is fresh that long after it was stored), or
    ``zmqpipeline.cache.RUN`` (``"run"``: fresh within the run that stored it only).
    ``max_bytes``: the results kept in the file at most, in bytes (keys and results as
    stored; SQLite's pages add a little): past it, the least recently used go first.
    See docs/guides/caching.md.
    """

    __slots__ = ("directory", "expire_s", "max_bytes", "this_run_only")

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        expire: float | _dt.timedelta | str | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if not isinstance(directory, (str, os.PathLike)) or not os.fspath(directory):
            raise TypeError(f"Cache(directory) needs a folder path, got {directory!r}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"Cache(max_bytes=...) must be a positive int, got {max_bytes!r}")
        #: The folder of the cache file.
        self.directory = Path(os.fspath(directory))
        #: The bound on the results kept, in bytes.
        self.max_bytes = max_bytes
        #: Seconds a result stays fresh (``None``: no limit).
        self.expire_s: float | None = None
        #: ``True``: fresh within the run that stored it only.
        self.this_run_only = False
        if isinstance(expire, _dt.timedelta):
            expire = expire.total_seconds()
        if expire == RUN:
            self.this_run_only = True
        elif expire is not None:
            if isinstance(expire, bool) or not isinstance(expire, (int, float)) or expire <= 0:
                raise ValueError(
                    "Cache(expire=...) must be None (never), a positive number of seconds, "
                    f"a timedelta or {RUN!r} (this run only), got {expire!r}"
                )
            self.expire_s = float(expire)

    @property
    def path(self) -> Path:
        """The cache file."""
        return self.directory / FILE_NAME

    def __repr__(self) -> str:
        expire = RUN if self.this_run_only else self.expire_s
        return f"Cache({str(self.directory)!r}, expire={expire!r}, max_bytes={self.max_bytes})"
