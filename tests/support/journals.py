"""Reading a journal's SQLite file directly, and the logging collector the journal
tests kill and restart."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from support.procs import FORK
from zmqpipeline import Collector, EndpointAddress


def query_rows(path: Path, query: str) -> list[Any]:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return [row[0] for row in db.execute(query)]
    finally:
        db.close()


def collector_class(
    ep: SimpleNamespace, log: Path, marks: dict[int, Any] | None = None, stall_at: int = 0
) -> type[Collector]:
    """Appends ``task_type i`` per id handled (flushed). At each count in ``marks`` it sets
    that event; at ``stall_at`` it sets it and waits, before that item's side effect, for
    the SIGKILL the test sends (so no id is handled twice by the kill)."""
    marks = marks or {}

    class LoggingCollector(Collector):
        count = 0

        def handle_collection(self, data, task_type, msgtype):
            type(self).count += 1
            count = type(self).count
            if count in marks:
                marks[count].set()
                if count == stall_at:
                    FORK.Event().wait(120)  # stopped here until killed
            with open(log, "a") as out:
                out.write(f"{task_type} {data['i']}\n")

        def handle_finished(self, data, task_type):
            with open(ep.results, "w") as out:
                json.dump(data, out)

    LoggingCollector.endpoint = EndpointAddress(ep.collector)
    LoggingCollector.ack_endpoint = EndpointAddress(ep.ack)
    return LoggingCollector
