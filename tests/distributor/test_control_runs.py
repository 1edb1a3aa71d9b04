"""Operating a run (issue 15): real processes steered through the control endpoint (ipc
and tcp, plain and CURVE), and ``zmqpipeline status`` of a dead endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from support.control import (
    item_log,
    logging_worker,
    lone_distributor,
    start,
    task_of,
    wait_for,
)
from support.paths import ROOT
from support.pipelines import load
from support.procs import free_port

from zmqpipeline import Control, ControlError

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    "transport,secure", [("ipc", False), ("tcp", False), ("tcp", True)], ids=["ipc", "tcp", "curve"]
)
def test_pause_holds_dispatch_resume_goes_on_drain_ends_cleanly(
    procs, ep, transport, secure, request
):
    env, security = None, None
    if secure:
        k = request.getfixturevalue("operator_keys")
        env = {"server": k.env("server"), "client": k.env("worker1")}
        security = k.security("operator")
    n = 2000
    start(procs, ep, n, workers=2, env=env)
    control = Control(ep.control, security)
    wait_for(control, lambda s: task_of(s)["collected"] >= 20)
    assert control.pause() == {"state": "paused"}
    paused_at = time.time()
    held = wait_for(control, lambda s: task_of(s)["in_flight"] == 0)
    time.sleep(0.5)  # a window in which nothing may be handed out
    again = control.status()
    assert again["state"] == "paused" and task_of(again) == {
        **task_of(held),
        "rate": ANY,
        "eta_s": ANY,
    }
    handed = task_of(held)["handed_out"]
    assert task_of(held)["collected"] == handed
    resumed_at = time.time()  # before the command: the distributor hands out at once
    assert control.resume() == {"state": "running"}
    wait_for(control, lambda s: task_of(s)["handed_out"] > handed + 20)
    for at, item in item_log(ep):  # item i is the i-th handed out (seq i - 1)
        if paused_at < at < resumed_at:
            assert item <= handed, (item, handed)
        if item > handed:
            assert at > resumed_at
    assert control.drain()["state"] == "draining"
    last = None
    while True:
        try:
            last = control.status()
        except ControlError:
            break
        time.sleep(0.02)
    codes = procs.join(20)
    assert codes == {name: 0 for name in codes}, codes
    results, report = load(ep.results), load(ep.report)
    collected = len(results["items"])
    assert last is not None and last["state"] == "finished" and last["ended_by"] == "drained"
    assert task_of(last)["collected"] == collected == report["collected"]["FIRST"]
    assert task_of(last)["handed_out"] == collected  # every handed-out item collected
    task = report["tasks"]["FIRST"]
    assert task["not_handed_out"] == n - collected > 0 and task["state"] == "drained"
    assert report["ended_by"] == "drained" and not report["ok"] and not report["aborted"]
    assert sorted(r[1]["i"] for r in results["items"]) == list(range(1, collected + 1))


class _Any:
    def __eq__(self, other: object) -> bool:
        return True


ANY = _Any()


def test_retry_failed_reruns_a_fixed_item_and_it_is_collected(procs, ep, tmp_path):
    fixed = tmp_path / "fixed"
    start(procs, ep, 300, delay=0.01, worker=logging_worker(ep, fail_unless=fixed))
    control = Control(ep.control)
    status = wait_for(control, lambda s: s["failures"])
    assert status["failures"][0]["item_id"] == "FIRST/2"
    assert "item 3 is not fixed yet" in status["failures"][0]["error"]
    fixed.touch()
    reply = control.retry_failed(["FIRST/2"])
    (retried,) = reply["retried"]
    assert retried["item_id"] == "FIRST/2"
    codes = procs.join(30)
    assert codes == {name: 0 for name in codes}, codes
    results, report = load(ep.results), load(ep.report)
    items = sorted(r[1]["i"] for r in results["items"])
    assert items == list(range(1, 301))  # item 3 once, under its new id
    assert report["ok"] and report["failed"] == [] and report["ended_by"] == "completed"


def test_stop_ends_quickly_and_reports_the_abandoned_items(procs, ep):
    start(procs, ep, 100_000, workers=2, delay=0.01)
    control = Control(ep.control)
    wait_for(control, lambda s: task_of(s)["collected"] >= 10)
    stopped_at = time.monotonic()
    assert control.stop()["state"] == "finished"
    procs.started["distributor"].join(10)
    assert time.monotonic() - stopped_at < 3.0
    codes = procs.join(10)
    assert codes == {name: 0 for name in codes}, codes
    report = load(ep.report)
    assert report["ended_by"] == "stopped" and report["aborted"] and not report["ok"]
    assert report["abandoned"] and all(a.startswith("FIRST/") for a in report["abandoned"])
    assert len(report["abandoned"]) == report["tasks"]["FIRST"]["in_flight"]


@pytest.mark.parametrize("transport", ["tcp"])
def test_commands_from_a_key_without_the_operator_role_get_nothing(
    procs, ep, transport, operator_keys
):
    lone_distributor(procs, ep, operator_keys.env("server"))
    operator = Control(ep.control, operator_keys.security("operator"))
    assert wait_for(operator, lambda s: True)["state"] == "waiting for collector"
    for name in ("worker1", "rogue"):  # a worker's key; a key not authorised at all
        with pytest.raises(ControlError, match="no reply"):
            Control(ep.control, operator_keys.security(name), timeout=1.0).stop()
    with pytest.raises(ControlError, match="no reply"):
        Control(ep.control, timeout=1.0).stop()  # no key at all
    assert operator.status()["state"] == "waiting for collector"  # nothing stopped it
    assert operator.stop()["state"] == "finished"
    assert procs.join(10) == {"distributor": 0}


@pytest.mark.parametrize("where", ["tcp", "ipc"])
def test_status_of_a_dead_endpoint_exits_1_within_its_timeout(tmp_path, where):
    endpoint = f"tcp://127.0.0.1:{free_port()}" if where == "tcp" else f"ipc://{tmp_path}/gone.ipc"
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "zmqpipeline", "status", endpoint, "--timeout", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert endpoint in result.stderr and result.stdout == ""
    assert time.monotonic() - began < 10  # the interpreter's start, then at most 1 s
