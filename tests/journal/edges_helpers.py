"""What the journal edge tests share: a collector that logs every id it handles (and can
stall before one, to be killed there), a worker that echoes ``i``, and the roles run as
forked processes that write their report (or the error that ended them) to a file."""

from __future__ import annotations

import json
import os
import sqlite3
import traceback
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from support.journals import collector_class  # noqa: F401  (the tests import it from here)

import zmqpipeline
from zmqpipeline import Collector, Distributor, EndpointAddress, Task, TaskType

for _name in ("EJ_SRC", "EJ_STAGE", "EJ_PUSHED"):
    TaskType.register_type(_name)


def worker_class(endpoint: str, collector_endpoint: str, task_type: str) -> type:
    class EchoWorker(zmqpipeline.SingleThreadedWorker):
        def handle_execution(self, data, *args, **kwargs):
            if data.get("delay"):
                import time

                time.sleep(data["delay"])  # the item's work
            return {"i": data["i"]}

    EchoWorker.task_type = TaskType(task_type)
    EchoWorker.endpoint = EndpointAddress(endpoint)
    EchoWorker.collector_endpoint = EndpointAddress(collector_endpoint)
    return EchoWorker


def run_collector(cls: type[Collector], journal: Path | None, error_file: Path | None = None):
    try:
        collector = cls(journal=journal)
        collector.run()
    except BaseException as exc:
        if error_file is None:
            raise
        error_file.write_text(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        raise SystemExit(3) from None


def run_distributor(ep: SimpleNamespace, tasks: list[type[Task]], journal: Path | None, **kw):
    """Run a distributor; its report goes to ``ep.report``, or the error that ended it to
    ``ep.report`` with ``.error`` (exit status 3)."""
    error = Path(str(ep.report) + ".error")
    try:
        report = Distributor(ep.collector, ep.ack, tasks=tasks, journal=journal, **kw).run()
    except BaseException as exc:
        error.write_text(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        raise SystemExit(3) from None
    with open(ep.report, "w") as out:
        json.dump(asdict(report), out)


def handled(log: Path) -> Counter[tuple[str, int]]:
    if not log.exists():
        return Counter()
    return Counter(
        (tt, int(i)) for tt, i in (line.split() for line in log.read_text().splitlines())
    )


def rows(path: Path, query: str) -> list[Any]:
    db = sqlite3.connect(path)
    try:
        return [row[0] if len(row) == 1 else row for row in db.execute(query)]
    finally:
        db.close()


def load(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def is_root() -> bool:
    return os.geteuid() == 0
