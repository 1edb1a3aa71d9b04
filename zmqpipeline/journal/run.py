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
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import JournalError
from ..runtime.seen import SeenSet
from .store import Store, pack, unpack

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
    #: Per stage or open-ended task: the items derived or pushed and not yet collected
    #: or failed, ``(seq, payload)`` in seq order (handed out before the crash or not).
    backlog: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    #: Open-ended tasks whose stream of pushed items was closed.
    closed: set[str] = field(default_factory=set)
    #: Per task type, its definition's fingerprint (:mod:`.fingerprint`); ``{}`` in a
    #: journal written before fingerprints.
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @property
    def standing(self) -> list[dict[str, Any]]:
        """The failures not re-driven since (``retry_failed``, ``--retry-failed``)."""
        gone = {f["item_id"] for f, _ in self.redrives}
        return [f for f in self.failed if f["item_id"] not in gone]


class RunJournal:
    """What the scheduler tells its journal. This base records nothing (no journal)."""

    #: Whether the hooks record anything: the scheduler skips the per-item ones if not.
    records = False
    #: Why the journal could not be written (a full disk...): it writes nothing more, and
    #: the distributor stops the run (``None``: it is fine).
    broken: JournalError | None = None

    def started(self, metadata: dict[str, Any]) -> None:
        """The run's metadata is known."""

    def handed_out(self, task_type: str, seq: int) -> None:
        """``seq`` was made by ``Task.handle`` and handed out."""

    def made(self, task_type: str, seq: int, payload: dict[str, Any]) -> None:
        """A stage derived (or a pusher pushed) item ``seq`` into its task's backlog: it
        is recorded with its payload, so a restart hands it out under the same seq."""

    def closed(self, task_type: str) -> None:
        """The stream of pushed items of ``task_type`` was closed."""

    def sync(self) -> None:
        """Commit now (before telling a pusher its items are accepted)."""

    def acked(self, task_type: str, seq: int) -> None:
        """The collector ACKed ``seq``."""

    def failed(self, record: Mapping[str, Any]) -> None:
        """An item (``record['seq']``) or a ``handle`` call (``seq`` ``None``) failed."""

    def redriven(self, record: Mapping[str, Any], seq: int) -> None:
        """The item of failure ``record`` was handed out again as ``seq`` (a seq of its
        task's own numbering, which a resumed run must keep: see
        :mod:`zmqpipeline.distributor.resume`),
        and its task, if finished, reopened."""

    def reopened(self, task_type: str) -> None:
        """A finished task has items coming again (a stage whose source re-drives one)."""

    def unfailed(self, record: Mapping[str, Any]) -> None:
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
        self._store = Store(path, "distributor")
        self.path = self._store.path
        self.commit_every_s = commit_every_s
        self.commit_every_events = commit_every_events
        self._done: dict[str, SeenSet] = {}
        self._new: dict[str, list[int]] = {}
        self._next_seq: dict[str, int] = {}
        self._collected: dict[str, int] = {}
        self._finished: set[str] = set()
        self._dirty: set[str] = set()
        self._failed: list[Mapping[str, Any]] = []
        self._redrives: list[tuple[Mapping[str, Any], int]] = []
        self._unfailed: list[Mapping[str, Any]] = []  # committed failures to take back
        self._made: list[tuple[str, int, bytes]] = []  # backlog items, packed
        self._backlogs: set[str] = set()  # task types with backlog rows
        self._closed: set[str] = set()
        self._closed_changed = False
        self._metadata: dict[str, Any] | None = None
        self._events = 0
        self._urgent = False
        self._last_commit = time.monotonic()
        self._shut = False

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
        journaled.failed = [unpack(blob) for (blob,) in rows]
        rows = store.db.execute("SELECT record, seq FROM redrives ORDER BY rowid")
        journaled.redrives = [(unpack(blob), seq) for blob, seq in rows]
        rows = store.db.execute("SELECT task_type, seq, payload FROM backlog ORDER BY 1, 2")
        for task_type, seq, blob in rows:
            if seq not in journaled.done.get(task_type, ()):
                journaled.backlog.setdefault(task_type, []).append((seq, unpack(blob)))
        journaled.closed = set(store.info("closed") or ())
        journaled.fingerprint = store.info("fingerprint") or {}
        return journaled

    def begin(
        self, run: int, tasks: dict[str, str], fingerprint: dict[str, Any] | None = None
    ) -> None:
        """Forget what the file held and record a new run (and its tasks' fingerprints)."""
        with self._store.transaction():
            self._store.clear()
            self._store.set_info("run", run)
            self._store.set_info("tasks", tasks)
            self._store.set_info("fingerprint", fingerprint or {})
            self._store.set_info("complete", False)
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
        self._backlogs = set(journaled.backlog)
        self._closed = set(journaled.closed)

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

    def made(self, task_type: str, seq: int, payload: dict[str, Any]) -> None:
        self._made.append((task_type, seq, pack(payload)))
        self._backlogs.add(task_type)
        self._next_seq[task_type] = max(self._next_seq[task_type], seq + 1)
        self._dirty.add(task_type)
        self._events += 1

    def closed(self, task_type: str) -> None:
        self._closed.add(task_type)
        self._closed_changed = self._urgent = True

    def sync(self) -> None:
        if self._pending():
            self.commit()

    def acked(self, task_type: str, seq: int) -> None:
        self._done[task_type].add(seq)
        self._new[task_type].append(seq)
        self._collected[task_type] += 1
        self._dirty.add(task_type)
        self._events += 1

    def failed(self, record: Mapping[str, Any]) -> None:
        task_type, seq = record["task_type"], record["seq"]
        if seq is not None:
            self._done[task_type].add(seq)
            self._new[task_type].append(seq)
            self._dirty.add(task_type)
        self._failed.append(record)
        self._events += 1

    def redriven(self, record: Mapping[str, Any], seq: int) -> None:
        task_type = record["task_type"]
        self._redrives.append((record, seq))
        self._next_seq[task_type] = max(self._next_seq[task_type], seq + 1)
        self.reopened(task_type)

    def unfailed(self, record: Mapping[str, Any]) -> None:
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

    def _pending(self) -> bool:
        buffered = self._dirty or self._failed or self._redrives or self._urgent
        return bool(buffered) or self._metadata is not None

    def maybe_commit(self, now: float) -> None:
        if not self._pending():
            return
        if (
            self._urgent
            or self._events >= self.commit_every_events
            or now >= self._last_commit + self.commit_every_s
        ):
            self.commit(now)

    def next_commit_at(self) -> float | None:
        if not self._pending() or self.broken is not None:
            return None
        return self._last_commit + self.commit_every_s

    def commit(self, now: float | None = None) -> None:
        """Write every buffered event in one transaction. If that fails, :attr:`broken`
        says why and nothing more is written (what was committed before stays)."""
        if self.broken is not None:
            return
        try:
            self._commit()
        except JournalError as exc:
            self.broken = exc
            return
        self._made.clear()
        self._closed_changed = False
        self._dirty.clear()
        self._failed.clear()
        self._redrives.clear()
        self._unfailed.clear()
        self._metadata = None
        self._events = 0
        self._urgent = False
        self._last_commit = time.monotonic() if now is None else now

    def _commit(self) -> None:
        store = self._store
        with store.transaction():
            if self._metadata is not None:
                store.set_info("metadata", self._metadata)
            if self._closed_changed:
                store.set_info("closed", sorted(self._closed))
            store.db.executemany("INSERT OR REPLACE INTO backlog VALUES (?, ?, ?)", self._made)
            for task_type in self._dirty & self._backlogs:  # collected or failed: gone
                self._drop_backlog(task_type)
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
                [(record["task_type"], pack(record)) for record in self._failed],
            )
            store.db.executemany(
                "INSERT INTO redrives VALUES (?, ?, ?)",
                [(record["task_type"], seq, pack(record)) for record, seq in self._redrives],
            )
            store.db.executemany(  # the same record packs to the same bytes
                "DELETE FROM failed WHERE rowid = "
                "(SELECT rowid FROM failed WHERE task_type = ? AND record = ? LIMIT 1)",
                [(record["task_type"], pack(record)) for record in self._unfailed],
            )

    def _drop_backlog(self, task_type: str) -> None:
        db, done = self._store.db, self._done[task_type]
        db.execute("DELETE FROM backlog WHERE task_type = ? AND seq < ?", (task_type, done.low))
        db.executemany(
            "DELETE FROM backlog WHERE task_type = ? AND seq = ?",
            [(task_type, seq) for seq in self._new[task_type] if seq >= done.low],
        )

    def reopen(self) -> None:
        """The run held is no longer complete (its failures go out again, see
        :func:`zmqpipeline.journal.redrive.redrive_failed`): a restart resumes it."""
        self.commit()
        with self._store.transaction():
            self._store.set_info("complete", False)

    def close(self, complete: bool) -> None:
        if self._shut:
            return
        self._shut = True
        try:
            self.commit()
            if complete and self.broken is None:
                with self._store.transaction():
                    self._store.set_info("complete", True)
        finally:
            self._store.close()


def run_is_complete(path: str | os.PathLike[str]) -> int | None:
    """The run id if the distributor journal at ``path`` holds a run that ended normally,
    else ``None`` (no such file, no run, or a run to resume)."""
    if not os.path.exists(path):
        return None
    store = Store(path, "distributor")
    try:
        return int(store.info("run")) if store.info("complete") else None
    finally:
        store.close()
