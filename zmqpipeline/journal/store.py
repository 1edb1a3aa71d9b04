"""One journal file (SQLite, WAL mode): its connection, schema, role and format, and the
watermark tables both roles' journals keep."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from typing import Any

import msgpack  # type: ignore[import-untyped]

from ..errors import ConfigurationError
from ..runtime.seen import SeenSet

__all__ = ["FORMAT", "Store", "pack", "unpack"]

#: Version of the file layout below.
FORMAT = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS marks (
    task_type TEXT PRIMARY KEY,
    low INTEGER NOT NULL,
    next_seq INTEGER NOT NULL,
    collected INTEGER NOT NULL,
    finished INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS done (
    task_type TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (task_type, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failed (task_type TEXT NOT NULL, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS redrives (
    task_type TEXT NOT NULL, seq INTEGER NOT NULL, record BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS backlog (
    task_type TEXT NOT NULL, seq INTEGER NOT NULL, payload BLOB NOT NULL,
    PRIMARY KEY (task_type, seq)
) WITHOUT ROWID;
"""


def pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True, default=repr)  # type: ignore[no-any-return]


def unpack(blob: bytes) -> Any:
    return msgpack.unpackb(blob, raw=False, strict_map_key=False)


class Store:
    """One journal file: its connection, schema and role, and the watermark tables.

    The file is locked for this process alone while open (a second role given the same
    file gets a clear error); the lock goes with the process, also when it is killed."""

    def __init__(self, path: str | os.PathLike[str], role: str) -> None:
        self.path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(parent, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA page_size=1024")  # small commits (takes on a new file)
            self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self.db.execute("PRAGMA journal_mode=WAL")
            # A killed process loses no commit; a machine crash may lose the last ones.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            found = self.info("role")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(
                f"journal {self.path} cannot be used (is another process using it?): {exc}"
            ) from None
        if found is None:
            self.set_info("role", role)
            self.set_info("format", FORMAT)
        elif found != role or self.info("format") != FORMAT:
            found_format = self.info("format")
            self.db.close()
            raise ConfigurationError(
                f"journal {self.path} is a {found} journal (format {found_format}), "
                f"not a {role} journal of format {FORMAT}"
            )

    def info(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM info WHERE key = ?", (key,)).fetchone()
        return None if row is None else unpack(row[0])

    def set_info(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO info VALUES (?, ?)", (key, pack(value)))

    def marks(self) -> dict[str, tuple[int, int, int, bool]]:
        rows = self.db.execute("SELECT task_type, low, next_seq, collected, finished FROM marks")
        return {tt: (low, nxt, n, bool(fin)) for tt, low, nxt, n, fin in rows}

    def load_done(self, task_type: str, low: int) -> SeenSet:
        seen = SeenSet()
        seen.low = low
        rows = self.db.execute("SELECT seq FROM done WHERE task_type = ?", (task_type,))
        for (seq,) in rows:
            seen.add(seq)
        return seen

    def write_done(
        self, task_type: str, seen: SeenSet, new: Iterable[int], counts: tuple[int, int, bool]
    ) -> None:
        """Record ``new`` seqs (those above the watermark), drop rows under it."""
        low = seen.low
        rows = [(task_type, seq) for seq in new if seq >= low]
        if rows:
            self.db.executemany("INSERT OR IGNORE INTO done VALUES (?, ?)", rows)
        self.db.execute("DELETE FROM done WHERE task_type = ? AND seq < ?", (task_type, low))
        next_seq, collected, finished = counts
        self.db.execute(
            "INSERT OR REPLACE INTO marks VALUES (?, ?, ?, ?, ?)",
            (task_type, low, next_seq, collected, int(finished)),
        )

    def clear(self) -> None:
        for table in ("marks", "done", "failed", "redrives", "backlog"):
            self.db.execute(f"DELETE FROM {table}")
        self.db.execute("DELETE FROM info WHERE key NOT IN ('role', 'format')")

    def close(self) -> None:
        self.db.close()
