"""Pipelines built for the tests: classes made per test with that test's endpoints, then
run as forked processes. The collector writes what it saw to a JSON file at the end."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from dataclasses import asdict
from types import SimpleNamespace
from typing import Any

import zmqpipeline
from zmqpipeline import Collector, Distributor, EndpointAddress, Task, TaskType

for _name in ("FIRST", "SECOND"):
    TaskType.register_type(_name)


def make_task(
    ep: str,
    n_items: int,
    task_type: str = "FIRST",
    dependencies=(),
    hold_until_acked: bool = False,
    delay: float = 0.0,
) -> type[Task]:
    class CountTask(Task):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.acks_seen: list[Any] = []

        def is_available_for_handling(self, last_ack_data):
            if not hold_until_acked:
                return True
            # one item at a time: the next only once the previous one's ACK is back
            return self.n == 0 or (last_ack_data is not None and last_ack_data.get("i") == self.n)

        def handle(self, data, address, msgtype):
            self.n += 1
            if self.n >= n_items:
                self.is_complete = True
            return {
                "i": self.n,
                "delay": delay,
                "task_metadata": self.metadata.get("v"),
                "handle_data": data.get("v"),
                "msgtype": msgtype,
            }

    CountTask.task_type = TaskType(task_type)
    CountTask.endpoint = EndpointAddress(ep)
    CountTask.dependencies = [TaskType(d) for d in dependencies]
    CountTask.__name__ = f"CountTask{task_type}"
    return CountTask


def _execute(worker: Any, data: dict[str, Any]) -> dict[str, Any]:
    if data["i"] in getattr(worker, "fail_on", ()):
        raise ValueError(f"item {data['i']} is poison")
    if data.get("delay"):
        time.sleep(data["delay"])
    return {
        **data,
        "pid": os.getpid(),
        "worker_metadata": worker.metadata.get("v"),
        "initialized": getattr(worker, "initialized_with", None),
    }


def make_worker(
    ep: str,
    collector_ep: str,
    task_type: str = "FIRST",
    threads: int | None = None,
    fail_on: set[int] | None = None,
) -> type:
    if threads is None:

        class Worker(zmqpipeline.SingleThreadedWorker):
            def init_worker(self):
                self.initialized_with = self.metadata.get("v", "no metadata")

            def handle_execution(self, data, *args, **kwargs):
                return _execute(self, data)
    else:

        class Worker(zmqpipeline.MultiThreadedWorker):  # type: ignore[no-redef]
            n_threads = threads

            def init_worker(self):
                self.initialized_with = self.metadata.get("v", "no metadata")

            def init_thread(self, worker_index):
                self.local = threading.local()
                self.local.index = worker_index

            def handle_execution(self, data, *args, **kwargs):
                return {**data, "main": True}

            def handle_thread_execution(self, data, index):
                return {**_execute(self, data), "thread": index}

    Worker.fail_on = frozenset(fail_on or ())
    Worker.task_type = TaskType(task_type)
    Worker.endpoint = EndpointAddress(ep)
    Worker.collector_endpoint = EndpointAddress(collector_ep)
    return Worker


def make_collector(
    ep: SimpleNamespace,
    ack_data: bool = False,
    progress=None,
    progress_after: int = 0,
    milestones=None,
    fail_on: set[int] | None = None,
) -> type[Collector]:
    """``progress`` is set after ``progress_after`` items; ``milestones`` maps more counts
    to events; ``handle_collection`` raises on the items in ``fail_on`` (every time)."""
    marks = dict(milestones or {})
    if progress is not None:
        marks[progress_after] = progress

    class RecordingCollector(Collector):
        def __init__(self) -> None:
            super().__init__()
            self.items: list[Any] = []

        def get_ack_data(self):
            return {"count": len(self.items)} if ack_data else None

        def handle_collection(self, data, task_type, msgtype):
            if fail_on and data.get("i") in fail_on:
                raise RuntimeError(f"collector refuses item {data.get('i')}")
            self.items.append([task_type, data, msgtype, self.metadata.get("v")])
            if len(self.items) in marks:
                marks[len(self.items)].set()
            return {"i": data.get("i")} if ack_data else None

        def handle_finished(self, data, task_type):
            with open(ep.results, "w") as out:
                json.dump(
                    {
                        "items": self.items,
                        "finished": data,
                        "task_type": task_type,
                        "metadata": self.metadata,
                    },
                    out,
                )

    RecordingCollector.endpoint = EndpointAddress(ep.collector)
    RecordingCollector.ack_endpoint = EndpointAddress(ep.ack)
    return RecordingCollector


def run_distributor(ep: SimpleNamespace, tasks: list[type[Task]], metadata: bool = False) -> None:
    dist = Distributor(
        ep.collector,
        ep.ack,
        receive_metadata=metadata,
        metadata_endpoint=ep.meta if metadata else None,
        tasks=tasks,
    )
    report = dist.run()
    with open(ep.report, "w") as out:
        json.dump(asdict(report), out)


def load(path) -> dict[str, Any]:
    with open(path) as source:
        return json.load(source)


def check_exactly_once(results: dict, n: int, task_type: str = "FIRST") -> None:
    seen = Counter(item[1]["i"] for item in results["items"] if item[0] == task_type)
    assert sorted(seen) == list(range(1, n + 1)), "every item collected"
    assert set(seen.values()) == {1}, "each item collected once"


def all_exit_zero(procs, timeout: float = 30.0) -> None:
    codes = procs.join(timeout)
    assert codes == {name: 0 for name in codes}, codes
