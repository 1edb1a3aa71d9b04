"""Every role ends by itself when its run ends or is stopped, whatever it was doing: a
worker inside a long item hears the END that came while it worked, the distributor's END
grace is not skipped on a single SIGTERM, and a run of big items ends."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import asdict
from types import SimpleNamespace
from typing import Any

import pytest
from support.pipelines import make_collector, make_task
from support.procs import FORK

import zmqpipeline
from zmqpipeline import Control, Distributor, EndpointAddress, Task, TaskType

pytestmark = pytest.mark.timeout(60)

ITEM_S = 1.0  # the worker is inside an item this long when the run ends


def _busy_worker(ep: SimpleNamespace, started: Any) -> type:
    class Busy(zmqpipeline.SingleThreadedWorker):
        def handle_execution(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> dict:
            started.set()
            time.sleep(data["delay"])  # the user's long item
            return data

    Busy.task_type = TaskType("FIRST")
    Busy.endpoint = EndpointAddress(ep.worker)
    Busy.collector_endpoint = EndpointAddress(ep.collector)
    return Busy


def _distributor(ep: SimpleNamespace, tasks: list[type[Task]], log: str, **kw: Any) -> None:
    handler = logging.FileHandler(log)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logging.getLogger("zmqpipeline").addHandler(handler)
    logging.getLogger("zmqpipeline").setLevel(logging.INFO)
    report = Distributor(ep.collector, ep.ack, tasks=tasks, **kw).run()
    with open(ep.report, "w") as out:
        json.dump(asdict(report), out)


def _start(procs, ep, tmp_path, **kw: Any):
    started = FORK.Event()
    task = make_task(ep.worker, 20, delay=ITEM_S)
    collector = make_collector(ep)
    worker = _busy_worker(ep, started)
    log = str(tmp_path / "distributor.log")
    procs.start("collector", lambda: collector().run())
    procs.start("worker", lambda: worker().run())
    procs.start("distributor", lambda: _distributor(ep, [task], log, **kw))
    assert started.wait(30), "the worker never started an item"
    return log


def _worker_ends_alone(procs) -> None:
    """The worker exits 0 within a few seconds of the END, by itself."""
    worker = procs.started["worker"]
    worker.join(ITEM_S + 5)
    assert worker.exitcode == 0, f"the worker did not end by itself (exit code {worker.exitcode})"


def test_a_worker_inside_an_item_ends_when_the_distributor_is_sigtermed(procs, endpoints, tmp_path):
    log = _start(procs, endpoints, tmp_path)
    os.kill(procs.started["distributor"].pid, signal.SIGTERM)
    _worker_ends_alone(procs)
    codes = procs.join(10)
    assert codes == {"collector": 0, "worker": 0, "distributor": 0}, codes
    text = open(log).read()
    assert "stop requested" in text
    # One SIGTERM: the collector (up all along) gets the END grace and confirms it.
    assert "did not confirm the end of the run" not in text, text


def test_a_worker_inside_an_item_ends_when_an_operator_stops_the_run(procs, endpoints, tmp_path):
    endpoints.control = f"ipc://{tmp_path}/control.ipc"
    _start(procs, endpoints, tmp_path, control_endpoint=endpoints.control)
    Control(endpoints.control).stop()
    _worker_ends_alone(procs)
    assert procs.join(10) == {"collector": 0, "worker": 0, "distributor": 0}


def test_a_worker_inside_an_item_ends_when_a_drained_run_ends(procs, endpoints, tmp_path):
    endpoints.control = f"ipc://{tmp_path}/control.ipc"
    _start(procs, endpoints, tmp_path, control_endpoint=endpoints.control)
    Control(endpoints.control).drain()
    procs.started["distributor"].join(30)  # the items in flight finish, then END
    _worker_ends_alone(procs)
    assert procs.join(10) == {"collector": 0, "worker": 0, "distributor": 0}
