"""One journal file (SQLite, WAL mode): its connection, schema, role and format, and the
watermark tables both roles' journals keep."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import msgpack  # type: ignore[import-untyped]

from ..errors import JournalError
from ..runtime.seen import SeenSet

__all__ = ["FORMAT", "Store", "cannot_use", "pack", "unpack"]

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


def cannot_use(path: str, exc: BaseException, doing: str = "cannot be used") -> JournalError:
    """The error for a journal file that failed, saying why in words: full, read-only,
    no permission, locked by another process, damaged."""
    text = str(exc)
    folder = os.path.dirname(os.path.abspath(path))
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        text = "database or disk is full"
    elif (isinstance(exc, OSError) and exc.errno == errno.EROFS) or _read_only(folder):
        text = f"{text} (read-only file system at {folder})"
    elif isinstance(exc, PermissionError) or not os.access(folder, os.W_OK | os.X_OK):
        text = f"{text} (permission denied: folder {folder} is not writable by us)"
    elif "locked" in text:
        text = f"{text} (is another process using it?)"
    elif "not a database" in text or "malformed" in text:
        text = f"{text} (damaged, or not a journal: move it away, or give another file)"
    return JournalError(f"journal {path} {doing}: {text}")


def _read_only(folder: str) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


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
            if found is None:
                with self.transaction():
                    self.set_info("role", role)
                    self.set_info("format", FORMAT)
        except (OSError, sqlite3.Error, JournalError) as exc:
            if hasattr(self, "db"):
                self.db.close()
            if isinstance(exc, JournalError):
                raise
            raise cannot_use(self.path, exc) from None
        if found is not None and (found != role or self.info("format") != FORMAT):
            found_format = self.info("format")
            self.db.close()
            raise JournalError(
                f"journal {self.path} is a {found} journal (format {found_format}), "
                f"not a {role} journal of format {FORMAT}"
            )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction; a failure rolls it back (if SQLite has not already: after a
        failed COMMIT it has) and raises a :class:`JournalError` naming the file and why."""
        db = self.db
        try:
            db.execute("BEGIN")
            yield
            db.execute("COMMIT")
        except (OSError, sqlite3.Error) as exc:
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the first error says what went wrong
            raise cannot_use(self.path, exc, "cannot be written") from None
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

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
