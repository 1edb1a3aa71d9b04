"""Re-drive the failures of a finished run from its journal (``zmqpipeline run --journal J
--retry-failed``): each item that failed for good gets a new seq of its task, recorded as
the operator's ``retry_failed`` records it (see :meth:`DistributorJournal.redriven`), and
the run is marked as not complete, so the next start of its distributor resumes it and
hands out just those items (see :mod:`zmqpipeline.distributor.resume`). Items a task's
``handle`` made with no seq (a failure of ``handle`` itself) cannot be re-driven."""

from __future__ import annotations

import os
from typing import Any

from .run import DistributorJournal

__all__ = ["redrive_failed"]


def redrive_failed(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """Re-drive the failed items of the run the distributor journal at ``path`` holds;
    return ``(item id, new item id)`` for each (``[]``: none to re-drive; the journal is
    then left as it was). The run may be complete or not."""
    if not os.path.exists(path):
        return []
    journal = DistributorJournal(path)
    complete = False
    try:
        journaled = journal.load()
        if journaled is None:
            return []
        complete = journaled.complete
        entries = [f for f in journaled.standing if _redrivable(f)]
        if not entries:
            return []
        journal.adopt(journaled)
        next_seq = dict(journaled.next_seq)
        redriven = []
        for entry in entries:
            task_type = entry["task_type"]
            seq = next_seq.get(task_type, 0)
            next_seq[task_type] = seq + 1
            journal.redriven(entry, seq)
            redriven.append((entry["item_id"], f"{task_type}/{seq}"))
        journal.reopen()
        complete = False
        return redriven
    finally:
        journal.close(complete=complete)


def _redrivable(record: dict[str, Any]) -> bool:
    return record.get("seq") is not None and record.get("task_type") is not None
