"""A run steered through its control endpoint: a worker that logs the items it starts,
a distributor with a control endpoint, and waiting on its status."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import zmqpipeline as zp
from support.curve import with_env
from support.pipelines import make_collector, make_task
from zmqpipeline import Control, ControlError, Distributor, EndpointAddress, TaskType


def logging_worker(ep: SimpleNamespace, fail_unless: Path | None = None) -> type:
    """Logs ``time item`` per item it starts; raises on item 3 until ``fail_unless`` exists."""

    class LoggingWorker(zp.SingleThreadedWorker):
        task_type = TaskType("FIRST")
        endpoint = EndpointAddress(ep.worker)
        collector_endpoint = EndpointAddress(ep.collector)

        def handle_execution(self, data, *args, **kwargs):
            with open(ep.log, "a") as log:
                log.write(f"{time.time()} {data['i']}\n")
            if fail_unless is not None and data["i"] == 3 and not fail_unless.exists():
                raise ValueError("item 3 is not fixed yet")
            time.sleep(data["delay"])
            return {"i": data["i"]}

    return LoggingWorker


def distributor(ep: SimpleNamespace, task: type, env: dict[str, str] | None = None) -> Callable:
    def run() -> None:
        os.environ["ZMQPIPELINE_END_GRACE_S"] = "1.0"  # time to see the state "finished"
        report = Distributor(ep.collector, ep.ack, tasks=[task], control_endpoint=ep.control).run()
        with open(ep.report, "w") as out:
            json.dump({**asdict(report), "ok": report.ok}, out)

    return with_env(env, run)


def start(procs, ep, n: int, workers: int = 1, delay: float = 0.005, env=None, worker=None):
    """Collector, workers and a distributor with a control endpoint; ``env``: CURVE keys."""
    collector = make_collector(ep)
    procs.start("collector", with_env(env and env["server"], lambda: collector().run()))
    worker = worker or logging_worker(ep)
    for i in range(workers):
        procs.start(f"worker{i}", with_env(env and env["client"], lambda: worker().run()))
    task = make_task(ep.worker, n, delay=delay)
    task.n_items = n  # a known size: the report counts what was never handed out
    procs.start("distributor", distributor(ep, task, env and env["server"]))


def wait_for(control: Control, check: Callable[[dict[str, Any]], bool], timeout: float = 20):
    deadline = time.monotonic() + timeout
    status: Any = None
    while time.monotonic() < deadline:
        try:
            status = control.status()
        except ControlError:  # not bound yet: the distributor is starting
            if status is not None:
                raise
        else:
            if check(status):
                return status
        time.sleep(0.02)  # a poll interval: status is how the run is seen from outside
    raise AssertionError(f"not reached within {timeout} s: {status}")


def task_of(status: dict[str, Any]) -> dict[str, Any]:
    return status["tasks"]["FIRST"]


def item_log(ep: SimpleNamespace) -> list[tuple[float, int]]:
    lines = Path(ep.log).read_text().split()
    return [(float(t), int(i)) for t, i in zip(lines[::2], lines[1::2], strict=True)]


def lone_distributor(procs, ep, env=None):
    """A distributor with nobody else: it waits for its collector and answers operators."""
    procs.start("distributor", distributor(ep, make_task(ep.worker, 10), env))
