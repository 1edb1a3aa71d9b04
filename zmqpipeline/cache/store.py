"""The cache file (SQLite): results by key, bounded in bytes with least-recently-used
eviction, locked for one distributor at a time, with a role and format marker so that a
damaged or foreign file is refused, never emptied."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError

__all__ = ["FORMAT", "ROLE", "ROW_OVERHEAD_BYTES", "CacheError", "CacheStore"]

#: What the file says it is, and the version of its layout.
ROLE = "zmqpipeline-cache"
FORMAT = 1
#: Bytes counted for each result besides its key, task type and result: what SQLite
#: keeps per row (the bound is on what is stored, the file is a little larger).
ROW_OVERHEAD_BYTES = 40
_COMMIT_EVERY_S = 1.0  # results stored since are lost if the process is killed
_EVICT_BATCH = 256

_SCHEMA = """
CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE results (
    key BLOB PRIMARY KEY,
    task_type TEXT NOT NULL,
    result BLOB NOT NULL,
    size INTEGER NOT NULL,
    stored_at REAL NOT NULL,
    used_at REAL NOT NULL,
    run INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX results_by_use ON results (used_at);
CREATE INDEX results_by_task ON results (task_type);
"""


class CacheError(ConfigurationError):
    """A cache file that cannot be used: damaged, foreign, or in use by another
    distributor. It names the file and what was wrong."""


class CacheStore:
    """One cache file, open for this process alone.

    ``max_bytes`` bounds the results kept (see :data:`ROW_OVERHEAD_BYTES`); ``clock``
    gives the time (``time.time``; tests pass their own). ``create=False`` refuses a
    missing file instead of making it (the ``zmqpipeline cache`` commands)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_bytes: int,
        clock: Callable[[], float] = time.time,
        create: bool = True,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.clock = clock
        if not create and not self.path.is_file():
            raise CacheError(f"no cache file at {self.path}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=0)
        except (OSError, sqlite3.Error) as exc:
            raise CacheError(f"cache file {self.path} cannot be opened: {exc}") from None
        try:
            self._open()
        except BaseException:
            self.db.close()
            raise
        self.total_bytes = int(self.db.execute("SELECT TOTAL(size) FROM results").fetchone()[0])
        self._touched: dict[bytes, float] = {}
        self._in_tx = False
        self._last_commit = clock()

    def _open(self) -> None:
        try:
            # The lock is taken by the first statement below and held until close.
            self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("BEGIN EXCLUSIVE")
            tables = {
                name
                for (name,) in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if not tables:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.executemany(
                    "INSERT INTO info VALUES (?, ?)", [("role", ROLE), ("format", str(FORMAT))]
                )
            else:
                self._check_marker(tables)
                check = self.db.execute("PRAGMA quick_check").fetchall()
                if check != [("ok",)]:
                    raise CacheError(
                        f"cache file {self.path} is damaged ({check[0][0]}): remove it, or "
                        "name another directory (nothing in it was changed)"
                    )
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _check_marker(self, tables: set[str]) -> None:
        info = dict(self.db.execute("SELECT key, value FROM info")) if "info" in tables else {}
        if info.get("role") != ROLE:
            raise CacheError(
                f"cache file {self.path} is not a zmqpipeline cache (tables: "
                f"{', '.join(sorted(tables))}): refusing to use or empty it; name another "
                "directory"
            )
        if info.get("format") != str(FORMAT):
            raise CacheError(
                f"cache file {self.path} has format {info.get('format')}, this zmqpipeline "
                f"reads format {FORMAT}: `zmqpipeline cache DIR clear` cannot help, remove it"
            )

    def _error(self, exc: sqlite3.Error) -> CacheError:
        text = str(exc)
        name = getattr(exc, "sqlite_errorname", "")
        if name in ("SQLITE_BUSY", "SQLITE_LOCKED") or "locked" in text:
            return CacheError(
                f"cache file {self.path} is in use by another distributor (a cache serves "
                "one distributor at a time): wait for it to end, or name another directory"
            )
        return CacheError(
            f"cache file {self.path} is damaged or not a zmqpipeline cache ({text}): "
            "remove it, or name another directory (nothing in it was changed)"
        )

    # -- results ----------------------------------------------------------------------

    def get(
        self, key: bytes, max_age_s: float | None = None, run: int | None = None
    ) -> bytes | None:
        """The stored result of ``key`` if it is fresh: stored at most ``max_age_s``
        ago, and with ``run`` by that run. A stale one is removed."""
        try:
            row = self.db.execute(
                "SELECT result, stored_at, run, size FROM results WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            result, stored_at, stored_by, size = row
            now = self.clock()
            if (max_age_s is not None and now - stored_at > max_age_s) or (
                run is not None and stored_by != run
            ):
                self._begin()
                self.db.execute("DELETE FROM results WHERE key = ?", (key,))
                self._touched.pop(key, None)
                self.total_bytes -= size
                return None
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        self._touched[key] = now
        return bytes(result)

    def put(self, key: bytes, task_type: str, result: bytes, run: int) -> None:
        """Store ``result`` (msgpack bytes) under ``key``; evict the least recently used
        results while the file holds more than ``max_bytes``."""
        size = len(key) + len(task_type) + len(result) + ROW_OVERHEAD_BYTES
        if size > self.max_bytes:
            return  # it would evict everything and still not fit
        now = self.clock()
        try:
            self._begin()
            old = self.db.execute("SELECT size FROM results WHERE key = ?", (key,)).fetchone()
            self.db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, task_type, result, size, now, now, run),
            )
            self._touched.pop(key, None)
            self.total_bytes += size - (old[0] if old else 0)
            if self.total_bytes > self.max_bytes:
                self._evict()
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _evict(self) -> None:
        self._write_touches()
        while self.total_bytes > self.max_bytes:
            rows = self.db.execute(
                "SELECT key, size FROM results ORDER BY used_at LIMIT ?", (_EVICT_BATCH,)
            ).fetchall()
            if not rows:
                self.total_bytes = 0
                return
            gone = []
            for key, size in rows:
                gone.append((key,))
                self.total_bytes -= size
                if self.total_bytes <= self.max_bytes:
                    break
            self.db.executemany("DELETE FROM results WHERE key = ?", gone)

    def drop_runs(self, task_types: Iterable[str], keep_run: int | None) -> int:
        """Remove the results of ``task_types`` (those whose cache is for one run only)
        stored by any run but ``keep_run`` (``None``: by every run); returns how many."""
        types = list(task_types)
        if not types:
            return 0
        marks = ",".join("?" * len(types))
        where = f"task_type IN ({marks})" + ("" if keep_run is None else " AND run != ?")
        args: list[Any] = [*types] + ([] if keep_run is None else [keep_run])
        return self._delete(where, args)

    def clear(self, task_type: str | None = None) -> int:
        """Remove every result (of ``task_type`` only, if given); returns how many."""
        if task_type is None:
            return self._delete("1", [])
        return self._delete("task_type = ?", [task_type])

    def _delete(self, where: str, args: list[Any]) -> int:
        try:
            self._begin()
            self._write_touches()
            gone = self.db.execute(
                f"SELECT COUNT(*), TOTAL(size) FROM results WHERE {where}", args
            ).fetchone()
            self.db.execute(f"DELETE FROM results WHERE {where}", args)
            self.total_bytes -= int(gone[1])
            return int(gone[0])
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def stats(self) -> dict[str, Any]:
        """``entries``, ``bytes`` (as counted against ``max_bytes``), ``file_bytes`` (on
        disk) and per task type its ``entries``, ``bytes``, ``oldest`` and ``last_used``
        (Unix times)."""
        rows = self.db.execute(
            "SELECT task_type, COUNT(*), TOTAL(size), MIN(stored_at), MAX(used_at) "
            "FROM results GROUP BY task_type ORDER BY task_type"
        ).fetchall()
        tasks = {
            tt: {"entries": n, "bytes": int(size), "oldest": oldest, "last_used": used}
            for tt, n, size, oldest, used in rows
        }
        return {
            "path": str(self.path),
            "entries": sum(t["entries"] for t in tasks.values()),
            "bytes": self.total_bytes,
            "max_bytes": self.max_bytes,
            "file_bytes": self.file_bytes(),
            "tasks": tasks,
        }

    def file_bytes(self) -> int:
        """The file's size on disk, its write-ahead log included."""
        wal = self.path.with_name(self.path.name + "-wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())

    # -- transactions -----------------------------------------------------------------

    def _begin(self) -> None:
        if not self._in_tx:
            self.db.execute("BEGIN")
            self._in_tx = True

    def _write_touches(self) -> None:
        if self._touched:
            self._begin()
            rows = [(used, key) for key, used in self._touched.items()]
            self.db.executemany("UPDATE results SET used_at = ? WHERE key = ?", rows)
            self._touched.clear()

    def maybe_commit(self) -> None:
        """Commit if the last commit is a second old (a killed process loses at most
        the results stored since: they are computed again next time)."""
        if self.clock() - self._last_commit >= _COMMIT_EVERY_S:
            self.commit()

    def commit(self) -> None:
        """Write what was stored and used so far."""
        try:
            self._write_touches()
            if self._in_tx:
                self.db.execute("COMMIT")
                self._in_tx = False
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        self._last_commit = self.clock()

    def close(self) -> None:
        """Commit and release the file (and its lock)."""
        try:
            self.commit()
        finally:
            self.db.close()
