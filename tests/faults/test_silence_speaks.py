"""Nothing waits silently: a role run by hand with no logging configured prints its
warnings on stderr, and a task that never says it is complete is told so."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from support import acks

from zmqpipeline import EndpointAddress, Settings, Task, TaskType, protocol
from zmqpipeline.distributor.scheduler import Scheduler
from zmqpipeline.runtime.checks import check_flag_name

pytestmark = pytest.mark.timeout(60)
ENDPOINT = "ipc:///tmp/ss-a.ipc"  # never bound: the scheduler has no sockets

for _name in ("SS_A",):
    TaskType.register_type(_name)


def test_a_worker_run_by_hand_says_on_stderr_that_no_distributor_answers(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import zmqpipeline
            zmqpipeline.TaskType.register_type("SS_W")

            class W(zmqpipeline.SingleThreadedWorker):
                task_type = zmqpipeline.TaskType("SS_W")
                endpoint = zmqpipeline.EndpointAddress("ipc://{tmp_path}/nobody.ipc")
                collector_endpoint = zmqpipeline.EndpointAddress("ipc://{tmp_path}/c.ipc")

                def handle_execution(self, data, *args, **kwargs):
                    return data

            W().run()
            """
        )
    )
    env = {**os.environ, "ZMQPIPELINE_HEARTBEAT_INTERVAL_S": "0.2"}
    proc = subprocess.Popen(
        [sys.executable, str(script)], stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            line = proc.stderr.readline()  # blocks until the worker says something
            if "no answer from the distributor" in line or not line:
                break
        assert "no answer from the distributor" in line and "nobody.ipc" in line, line
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc.stderr.close()


def _task(n_items: int | None, typo: bool = False) -> type[Task]:
    class Endless(Task):
        task_type = TaskType("SS_A")
        endpoint = EndpointAddress(ENDPOINT)

        def handle(self, data, address, msgtype):
            if typo:
                self.is_completed = True  # meant is_complete
            return {}

    Endless.n_items = n_items
    return Endless


def _run_until(s: Scheduler, items: int) -> None:
    s.on_collector_hello(b"collector", 0.0)
    s.start({}, 0.0)
    s.on_worker_message(ENDPOINT, b"w", protocol.Ready("SS_A", items, items, 1), 0.0)
    s.on_worker_message(ENDPOINT, b"w", protocol.Credit(0), 0.0)
    s.dispatch(0.0)


def test_a_task_handing_out_past_its_declared_size_is_warned_once(caplog):
    settings = Settings.from_env()
    s = Scheduler([_task(3)()], settings, run=1)
    with caplog.at_level(logging.WARNING, logger="zmqpipeline.distributor"):
        _run_until(s, 10)
        for now in (0.1, 0.2, 0.3):  # collected: the worker's credit comes back
            s.on_ack(acks.plain("SS_A", list(s.tasks["SS_A"].in_flight), by=b"w"), now)
            s.on_worker_message(ENDPOINT, b"w", protocol.Credit(10), now)
            s.dispatch(now)
    said = [r.getMessage() for r in caplog.records if "has not set is_complete" in r.getMessage()]
    assert s.tasks["SS_A"].next_seq > 3
    assert len(said) == 1, said
    assert said[0].startswith("task SS_A declares 3 item(s) but has handed out "), said


def test_a_typo_of_is_complete_fails_the_task_with_the_right_name():
    s = Scheduler([_task(None, typo=True)()], Settings.from_env(), run=1)
    _run_until(s, 4)
    failed = s.tasks["SS_A"].failed
    assert len(failed) == 1 and failed[0]["item_id"].startswith("SS_A/handle#")
    assert "did you mean is_complete?" in failed[0]["error"]
    assert s.tasks["SS_A"].task.is_complete  # it hands out nothing more
    with pytest.raises(AttributeError, match="did you mean is_complete"):
        check_flag_name(_task(None), "is_completed")  # the check the distributor asks
    check_flag_name(_task(None), "count")  # any other new name is the task's own
