"""The collector's journal (see :mod:`zmqpipeline.journal.run`): the run it follows and the
ids it has called ``handle_collection`` for, so a restarted collector never handles an id
twice. Each id goes to a side file as soon as the call returns (one ``os.write``), and is
folded into the SQLite file once per read batch."""

from __future__ import annotations

import logging
import os
import sqlite3
from urllib.parse import quote

from ..errors import JournalError
from ..runtime.seen import SeenSet
from .store import Store, cannot_use, unpack

__all__ = ["CollectorJournal"]

logger = logging.getLogger("zmqpipeline.collector")

_MAX_SEQ = 2**63 - 1  # what SQLite's INTEGER holds


class CollectorJournal:
    """The collector's journal: the run it follows and the ids it has handled.

    Each id is appended to a side file (``<path>-handled``, one line in one ``write``
    system call, so a killed process loses none; a line a full disk takes in part is an
    error, and cut off) as soon as ``handle_collection``
    returns for it, before its ACK can leave; once per read batch the ids are folded into
    the SQLite file in one transaction and the side file emptied. A restarted collector
    reads both back."""

    def __init__(self, path: str | os.PathLike[str], fresh: bool = False) -> None:
        #: Follow a new run even if the journal holds one that has not ended.
        self.fresh = fresh
        self._store = Store(path, "collector")
        self.path = self._store.path
        self._log_path = self.path + "-handled"
        try:
            self._log = os.open(self._log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            self._store.close()
            raise cannot_use(self._log_path, exc) from None
        self._seen: dict[str, SeenSet] = {}
        self._new: dict[str, list[int]] = {}
        self._prefix: dict[str, bytes] = {}
        self._types: set[bytes] = set()
        #: Why the journal could not be written (a full disk...); then it writes no more.
        self.broken: JournalError | None = None

    def follow(self, run: int, seen: dict[str, SeenSet]) -> int:
        """The START of ``run`` arrived: if the journal follows that run, fill ``seen``
        with the ids handled before and return how many; else forget them (a new run)."""
        store = self._store
        self._seen, self._new = seen, {tt: [] for tt in seen}
        self._prefix = {tt: tt.encode() + b"\t" for tt in seen}
        self._types = {tt.encode() for tt in seen}
        held = store.info("run")
        if held != run:
            if held is not None and not store.info("ended") and not self.fresh:
                self._refuse(held, run)
            with store.transaction():
                store.clear()
                store.set_info("run", run)
            os.ftruncate(self._log, 0)
            return 0
        for task_type, (low, _, _, _) in store.marks().items():
            if task_type in seen:
                seen[task_type] = store.load_done(task_type, low)
        for task_type, seq in self._replay():
            if task_type in seen:
                seen[task_type].add(seq)
                self._new[task_type].append(seq)
        self.commit()
        os.ftruncate(self._log, 0)  # a line a kill cut in part, if nothing else was there
        return sum(s.low + len(s.above) for s in seen.values())

    def _refuse(self, held: int, run: int) -> None:
        """A START of another run while ours has not ended, ids handled: never start
        over silently (its distributor's journal was lost, or replaced?)."""
        store = self._store
        handled = sum(low for low, _, _, _ in store.marks().values())
        handled += store.db.execute("SELECT count(*) FROM done").fetchone()[0]
        if not handled and not os.fstat(self._log).st_size:
            return  # nothing handled yet: nothing to hand twice
        raise JournalError(
            f"journal {self.path} follows run {held}, which has not ended, but the "
            f"distributor started run {run}: its journal was lost or replaced? Not "
            "following it (ids handled would be handled again): give the distributor "
            "its journal back, or start the collector with a fresh journal "
            "(fresh=True, --fresh) to follow the new run"
        )

    def complete_run(self) -> int | None:
        """The run this journal follows if it ended and the distributor's journal beside
        it (``distributor.sqlite`` in the same folder, as ``journal_dir`` places them)
        holds it as complete: that distributor ends at once, so there is nothing to wait
        for. ``None`` otherwise (a new run may start over an ended journal)."""
        held = self._store.info("run")
        if held is None or self.fresh or not self._store.info("ended"):
            return None
        beside = os.path.join(os.path.dirname(self.path), "distributor.sqlite")
        return int(held) if _complete_run_at(beside) == held else None

    def ended(self) -> None:
        """The run ended (not stopped): a new one may start over this journal."""
        self.commit()
        if self.broken is None:
            with self._store.transaction():
                self._store.set_info("ended", True)

    def _replay(self) -> list[tuple[str, int]]:
        """The ids in the side file; a last line without its newline is incomplete (the
        kill came mid-write). A damaged line is skipped with a WARNING saying so: the id
        it held, if any, may be handled again."""
        with open(self._log_path, "rb") as log:
            lines = log.read().split(b"\n")[:-1]
        out, bad = [], []
        for line in lines:
            task_type, _, seq = line.partition(b"\t")
            if seq.isdigit() and int(seq) <= _MAX_SEQ and task_type in self._types:
                out.append((task_type.decode(), int(seq)))
            else:
                bad.append(line)
        if bad:
            logger.warning(
                "journal %s: %d damaged line(s) skipped (first: %r): the id(s) they held, "
                "if any, may be handled again",
                self._log_path,
                len(bad),
                bad[0][:80],
            )
        return out

    def handled(self, task_type: str, seq: int) -> None:
        """``handle_collection`` returned for ``seq`` (or it was skipped): record it now."""
        line, done = self._prefix[task_type] + b"%d\n" % seq, 0
        try:
            while done < len(line):  # a full disk's last page takes a line in part
                done += os.write(self._log, line[done:])
        except OSError as exc:
            if done:  # no half line for the next id to be glued to
                os.ftruncate(self._log, os.fstat(self._log).st_size - done)
            self.broken = cannot_use(self._log_path, exc, "cannot be written")
            raise self.broken from None
        self._new[task_type].append(seq)

    def commit(self) -> None:
        """Fold the ids recorded since the last commit into the SQLite file."""
        dirty = [tt for tt, new in self._new.items() if new]
        if not dirty or self.broken is not None:
            return
        try:
            with self._store.transaction():
                for task_type in dirty:
                    seen = self._seen[task_type]
                    self._store.write_done(task_type, seen, self._new[task_type], (0, 0, False))
        except JournalError as exc:
            self.broken = exc
            raise
        for task_type in dirty:
            self._new[task_type] = []
        os.ftruncate(self._log, 0)

    def close(self) -> None:
        try:
            self.commit()
        finally:
            os.close(self._log)
            self._store.close()
        if self.broken is None and os.path.getsize(self._log_path) == 0:
            os.unlink(self._log_path)


def _complete_run_at(path: str) -> int | None:
    """The run the distributor journal at ``path`` holds as complete, read without a lock
    (SQLite's ``immutable``), so never in the way of a distributor opening it: a file
    being written may read stale or fail, and then a run is not complete (``None``)."""
    if not os.path.exists(path):
        return None
    try:
        db = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro&immutable=1", uri=True)
        try:
            rows = dict(db.execute("SELECT key, value FROM info WHERE key IN ('run', 'complete')"))
        finally:
            db.close()
        complete, run = unpack(rows["complete"]), unpack(rows["run"])
    except (sqlite3.Error, KeyError, ValueError):
        return None
    return run if complete is True and type(run) is int else None
