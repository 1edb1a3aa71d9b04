"""Journals that let a run survive a crash: what the distributor and the collector record,
each in its own SQLite file (stdlib :mod:`sqlite3`, WAL mode), and what a restarted role
reads back. No sockets here.

The **distributor** records its run id, its task classes, the metadata, and per task type
the sequence numbers handed out (``next_seq``), those ACKed or failed for good (a watermark
plus the set above it, so the file stays small), the failures and which tasks finished.
Its events are buffered and committed every :data:`COMMIT_EVERY_S` or
:data:`COMMIT_EVERY_EVENTS` (and when a task finishes), so the journal never sets the
pace: a crash forgets at most the last batch, whose items are handed out again and
deduplicated by the collector.

The **collector** records the run it follows and, per task type, the ids it has called
``handle_collection`` for: each is written to a side file as soon as that call returns, so
before its ACK can leave (a killed collector forgets at most the one item being handled),
and folded into the SQLite file once per read batch.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack  # type: ignore[import-untyped]

from .errors import ConfigurationError
from .state import SeenSet

__all__ = [
    "COMMIT_EVERY_EVENTS",
    "COMMIT_EVERY_S",
    "DistributorJournal",
    "JournaledRun",
    "RunJournal",
    "run_is_complete",
]

#: The distributor commits its buffered events at least this often...
COMMIT_EVERY_S = 0.05
#: ... or as soon as this many are waiting.
COMMIT_EVERY_EVENTS = 1000
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
"""


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True, default=repr)  # type: ignore[no-any-return]


def _unpack(blob: bytes) -> Any:
    return msgpack.unpackb(blob, raw=False, strict_map_key=False)


class _Store:
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
        return None if row is None else _unpack(row[0])

    def set_info(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO info VALUES (?, ?)", (key, _pack(value)))

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
        for table in ("marks", "done", "failed", "redrives"):
            self.db.execute(f"DELETE FROM {table}")
        self.db.execute("DELETE FROM info WHERE key NOT IN ('role', 'format')")

    def close(self) -> None:
        self.db.close()


# -- the distributor ---------------------------------------------------------------------


@dataclass
class JournaledRun:
    """What a distributor's journal holds of a run."""

    run: int
    #: task type -> name of its Task class
    tasks: dict[str, str]
    #: The run's metadata, ``None`` if the run had not started.
    metadata: dict[str, Any] | None
    complete: bool
    #: Per task type: seqs ACKed or failed for good.
    done: dict[str, SeenSet] = field(default_factory=dict)
    next_seq: dict[str, int] = field(default_factory=dict)
    collected: dict[str, int] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    failed: list[dict[str, Any]] = field(default_factory=list)
    #: Items that failed for good and were handed out again (``retry_failed``): their
    #: failure record and the seq they went out under, in order.
    redrives: list[tuple[dict[str, Any], int]] = field(default_factory=list)


class RunJournal:
    """What the scheduler tells its journal. This base records nothing (no journal)."""

    #: Whether the hooks record anything: the scheduler skips the per-item ones if not.
    records = False

    def started(self, metadata: dict[str, Any]) -> None:
        """The run's metadata is known."""

    def handed_out(self, task_type: str, seq: int) -> None:
        """``seq`` was made by ``Task.handle`` and handed out."""

    def acked(self, task_type: str, seq: int) -> None:
        """The collector ACKed ``seq``."""

    def failed(self, record: dict[str, Any]) -> None:
        """An item (``record['seq']``) or a ``handle`` call (``seq`` ``None``) failed."""

    def redriven(self, record: dict[str, Any], seq: int) -> None:
        """The item of failure ``record`` was handed out again as ``seq`` (a seq of its
        task's own numbering, which a resumed run must keep: see :mod:`zmqpipeline.resume`),
        and its task, if finished, reopened."""

    def reopened(self, task_type: str) -> None:
        """A finished task has items coming again (a stage whose source re-drives one)."""

    def unfailed(self, record: dict[str, Any]) -> None:
        """The item of failure ``record`` was collected after all (a late result)."""

    def task_finished(self, task_type: str) -> None:
        """Every item of the task is collected or failed."""

    def maybe_commit(self, now: float) -> None:
        """Commit if the batch is due."""

    def next_commit_at(self) -> float | None:
        """When :meth:`maybe_commit` should next be called (``None``: nothing waits)."""
        return None

    def close(self, complete: bool) -> None:
        """Commit what is left; ``complete``: the run has ended normally."""


class DistributorJournal(RunJournal):
    """The distributor's journal: open it, :meth:`load` what a crashed run left, then
    :meth:`begin` a new run or :meth:`adopt` the loaded one; the hooks buffer events and
    :meth:`maybe_commit` writes them in batches."""

    records = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        commit_every_s: float = COMMIT_EVERY_S,
        commit_every_events: int = COMMIT_EVERY_EVENTS,
    ) -> None:
        self._store = _Store(path, "distributor")
        self.path = self._store.path
        self.commit_every_s = commit_every_s
        self.commit_every_events = commit_every_events
        self._done: dict[str, SeenSet] = {}
        self._new: dict[str, list[int]] = {}
        self._next_seq: dict[str, int] = {}
        self._collected: dict[str, int] = {}
        self._finished: set[str] = set()
        self._dirty: set[str] = set()
        self._failed: list[dict[str, Any]] = []
        self._redrives: list[tuple[dict[str, Any], int]] = []
        self._unfailed: list[dict[str, Any]] = []  # committed failures to take back
        self._metadata: dict[str, Any] | None = None
        self._events = 0
        self._urgent = False
        self._last_commit = time.monotonic()
        self._closed = False

    def load(self) -> JournaledRun | None:
        """The run this journal holds (``None``: it holds none)."""
        store = self._store
        run = store.info("run")
        if run is None:
            return None
        journaled = JournaledRun(
            run, store.info("tasks"), store.info("metadata"), bool(store.info("complete"))
        )
        for task_type, (low, next_seq, collected, finished) in store.marks().items():
            journaled.done[task_type] = store.load_done(task_type, low)
            journaled.next_seq[task_type] = next_seq
            journaled.collected[task_type] = collected
            if finished:
                journaled.finished.add(task_type)
        rows = store.db.execute("SELECT record FROM failed ORDER BY rowid")
        journaled.failed = [_unpack(blob) for (blob,) in rows]
        rows = store.db.execute("SELECT record, seq FROM redrives ORDER BY rowid")
        journaled.redrives = [(_unpack(blob), seq) for blob, seq in rows]
        return journaled

    def begin(self, run: int, tasks: dict[str, str]) -> None:
        """Forget what the file held and record a new run."""
        db = self._store.db
        db.execute("BEGIN")
        self._store.clear()
        self._store.set_info("run", run)
        self._store.set_info("tasks", tasks)
        self._store.set_info("complete", False)
        db.execute("COMMIT")
        for task_type in tasks:
            self._track(task_type, SeenSet(), 0, 0)

    def adopt(self, journaled: JournaledRun) -> None:
        """Go on recording the run :meth:`load` returned."""
        for task_type in journaled.tasks:
            done = journaled.done.get(task_type, SeenSet())
            copy = SeenSet()
            copy.low, copy.above = done.low, set(done.above)
            self._track(
                task_type,
                copy,
                journaled.next_seq.get(task_type, 0),
                journaled.collected.get(task_type, 0),
            )
        self._finished = set(journaled.finished)

    def _track(self, task_type: str, done: SeenSet, next_seq: int, collected: int) -> None:
        self._done[task_type] = done
        self._new[task_type] = []
        self._next_seq[task_type] = next_seq
        self._collected[task_type] = collected

    # -- the hooks (buffered) ------------------------------------------------------------

    def started(self, metadata: dict[str, Any]) -> None:
        self._metadata = metadata
        self._urgent = True

    def handed_out(self, task_type: str, seq: int) -> None:
        self._next_seq[task_type] = seq + 1
        self._dirty.add(task_type)

    def acked(self, task_type: str, seq: int) -> None:
        self._done[task_type].add(seq)
        self._new[task_type].append(seq)
        self._collected[task_type] += 1
        self._dirty.add(task_type)
        self._events += 1

    def failed(self, record: dict[str, Any]) -> None:
        task_type, seq = record["task_type"], record["seq"]
        if seq is not None:
            self._done[task_type].add(seq)
            self._new[task_type].append(seq)
            self._dirty.add(task_type)
        self._failed.append(record)
        self._events += 1

    def redriven(self, record: dict[str, Any], seq: int) -> None:
        task_type = record["task_type"]
        self._redrives.append((record, seq))
        self._next_seq[task_type] = max(self._next_seq[task_type], seq + 1)
        self.reopened(task_type)

    def unfailed(self, record: dict[str, Any]) -> None:
        task_type = record["task_type"]
        self._collected[task_type] += 1  # its seq is done already (failed)
        self._dirty.add(task_type)
        self._events += 1
        for i, buffered in enumerate(self._failed):
            if buffered is record:
                del self._failed[i]  # not written yet
                return
        self._unfailed.append(record)

    def reopened(self, task_type: str) -> None:
        self._finished.discard(task_type)
        self._dirty.add(task_type)
        self._urgent = True  # an operator's command: a restart must not forget it

    def task_finished(self, task_type: str) -> None:
        self._finished.add(task_type)
        self._dirty.add(task_type)
        self._urgent = True  # its dependants start now: a restart must not run it again

    # -- commits -------------------------------------------------------------------------

    def maybe_commit(self, now: float) -> None:
        if not (self._dirty or self._failed or self._redrives or self._metadata is not None):
            return
        if (
            self._urgent
            or self._events >= self.commit_every_events
            or now >= self._last_commit + self.commit_every_s
        ):
            self.commit(now)

    def next_commit_at(self) -> float | None:
        if not (self._dirty or self._failed or self._redrives or self._metadata is not None):
            return None
        return self._last_commit + self.commit_every_s

    def commit(self, now: float | None = None) -> None:
        """Write every buffered event in one transaction."""
        store = self._store
        store.db.execute("BEGIN")
        try:
            if self._metadata is not None:
                store.set_info("metadata", self._metadata)
            for task_type in self._dirty:
                counts = (
                    self._next_seq[task_type],
                    self._collected[task_type],
                    task_type in self._finished,
                )
                store.write_done(task_type, self._done[task_type], self._new[task_type], counts)
                self._new[task_type] = []
            store.db.executemany(
                "INSERT INTO failed VALUES (?, ?)",
                [(record["task_type"], _pack(record)) for record in self._failed],
            )
            store.db.executemany(
                "INSERT INTO redrives VALUES (?, ?, ?)",
                [(record["task_type"], seq, _pack(record)) for record, seq in self._redrives],
            )
            store.db.executemany(  # the same record packs to the same bytes
                "DELETE FROM failed WHERE rowid = "
                "(SELECT rowid FROM failed WHERE task_type = ? AND record = ? LIMIT 1)",
                [(record["task_type"], _pack(record)) for record in self._unfailed],
            )
            store.db.execute("COMMIT")
        except BaseException:
            store.db.execute("ROLLBACK")
            raise
        self._dirty.clear()
        self._failed.clear()
        self._redrives.clear()
        self._unfailed.clear()
        self._metadata = None
        self._events = 0
        self._urgent = False
        self._last_commit = time.monotonic() if now is None else now

    def close(self, complete: bool) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.commit()
            if complete:
                self._store.set_info("complete", True)
        finally:
            self._store.close()


def run_is_complete(path: str | os.PathLike[str]) -> int | None:
    """The run id if the distributor journal at ``path`` holds a run that ended normally,
    else ``None`` (no such file, no run, or a run to resume)."""
    if not os.path.exists(path):
        return None
    store = _Store(path, "distributor")
    try:
        return int(store.info("run")) if store.info("complete") else None
    finally:
        store.close()


# -- the collector -----------------------------------------------------------------------
