"""Operating a run (issue 15): the command logic driven directly with a hand-held clock,
then real processes steered through the control endpoint (ipc and tcp, plain and CURVE)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import zmq
from conftest import free_port
from pipelines import load, make_collector, make_task
from test_scheduler import EP, SETTINGS, ack, data_items, make, sent, task_class
from test_security import keys, with_env  # noqa: F401  (keys: a fixture)

import zmqpipeline as zp
from zmqpipeline import Control, ControlError, Distributor, EndpointAddress, TaskType, protocol
from zmqpipeline.distributor.control import ControlLogic, run_state
from zmqpipeline.security import generate_keys

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


def command(logic: ControlLogic, name: str, now: float = 0.0, **args):
    return logic.handle(protocol.Control(1, name, args), now)


def running(n: int = 10, capacity: int = 2):
    s = make(task_class("S_A", n))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", capacity, capacity, 1), 0.0)
    s.on_worker_message(EP, b"w1", protocol.Credit(0), 0.0)  # the handshake
    return s, ControlLogic(s, "ipc://control.ipc")


# -- the logic, no sockets ------------------------------------------------------------------


def test_pause_hands_out_nothing_and_resume_goes_on():
    s, logic = running()
    assert data_items(sent(s)) == [0, 1]
    assert command(logic, "pause") == (True, {"state": "paused"})
    ack(s, "S_A", [0, 1], 0.1)
    s.on_worker_message(EP, b"w1", protocol.Credit(2), 0.1)
    s.dispatch(0.1)
    assert data_items(sent(s)) == []  # in flight finished and collected, nothing new
    assert s.tasks["S_A"].collected == 2
    assert command(logic, "resume", 0.2) == (True, {"state": "running"})
    assert data_items(sent(s)) == [2, 3]


def test_a_paused_run_is_held_open_until_resumed():
    s, logic = running(n=2)
    sent(s)
    command(logic, "pause")
    ack(s, "S_A", [0, 1], 0.1)
    assert s.tasks["S_A"].finished and not s.done
    command(logic, "resume", 0.2)
    assert s.done and s.ended_by == "completed"


def test_commands_that_make_no_sense_get_an_error_not_a_crash():
    _, logic = running()
    ok, body = command(logic, "resume")
    assert not ok and "not paused" in body["error"] and body["state"] == "running"
    assert command(logic, "retry_failed")[1]["error"] == "no failed item to retry"
    assert not command(logic, "retry_failed", ids="S_A/1")[0]  # not a list
    assert "unknown command" in command(logic, "explode")[1]["error"]
    command(logic, "pause")
    assert "already" in command(logic, "pause")[1]["error"]
    command(logic, "stop")
    ok, body = command(logic, "drain")
    assert not ok and "has ended (stopped)" in body["error"] and body["state"] == "finished"
    assert command(logic, "status")[0]


def test_drain_finishes_what_is_in_flight_and_ends():
    s, logic = running(n=10)
    assert data_items(sent(s)) == [0, 1]
    assert command(logic, "drain") == (True, {"state": "draining"})
    s.on_worker_message(EP, b"w1", protocol.Credit(2), 0.1)
    s.dispatch(0.1)
    assert data_items(sent(s)) == []
    ack(s, "S_A", [0], 0.2)
    assert not s.done
    ack(s, "S_A", [1], 0.3)
    assert s.done and s.ended_by == "drained"
    assert s.summary(aborted=False)["tasks"]["S_A"]["handed_out"] == 2


def test_drain_still_hands_out_retries_of_items_in_flight():
    s, logic = running(n=10, capacity=1)
    assert data_items(sent(s)) == [0]
    command(logic, "drain")
    s.on_worker_message(EP, b"w1", protocol.Fail(0, "boom", ["ValueError"]), 0.1)
    s.on_worker_message(EP, b"w1", protocol.Credit(1), 0.1)
    s.dispatch(1.0)  # after the backoff
    assert data_items(sent(s)) == [0]
    ack(s, "S_A", [0], 1.1)
    assert s.done


def test_stop_ends_now_and_leaves_in_flight_items_behind():
    s, logic = running()
    sent(s)
    assert command(logic, "stop") == (True, {"state": "finished"})
    assert s.done and s.ended_by == "stopped"
    assert sorted(s.tasks["S_A"].in_flight) == [0, 1]  # the report lists them as abandoned


def test_retry_failed_hands_a_failed_item_out_again_under_a_new_id():
    s, logic = running(n=3, capacity=1)
    now, handed = 0.0, data_items(sent(s))
    for _ in range(SETTINGS.max_attempts):  # item 0 raises every time: it fails for good
        s.on_worker_message(EP, b"w1", protocol.Fail(0, "boom\nValueError: bad", ["E"]), now)
        s.on_worker_message(EP, b"w1", protocol.Credit(1), now)
        now += 3.0
        s.dispatch(now)
        handed += data_items(sent(s, now))
    assert [f["item_id"] for f in s.tasks["S_A"].failed] == ["S_A/0"]
    assert logic.status(now)["failures"] == [
        {"item_id": "S_A/0", "error": "ValueError: bad", "attempts": 3, "deaths": 0}
    ]
    ack(s, "S_A", [seq for seq in set(handed) if seq], now)
    s.on_worker_message(EP, b"w1", protocol.Credit(1), now)
    s.dispatch(now)
    handed = data_items(sent(s, now))
    ack(s, "S_A", handed, now)
    assert s.tasks["S_A"].finished and s.done  # nothing held it open
    s, logic = running(n=1, capacity=1)
    sent(s)
    command(logic, "pause")  # held open: the failed item may be re-driven
    for attempt in range(SETTINGS.max_attempts):
        s.on_worker_message(EP, b"w1", protocol.Fail(0, "ValueError: bad", ["E"]), attempt)
        s.on_worker_message(EP, b"w1", protocol.Credit(1), attempt)
        s.dispatch(attempt + 3.0)
        if attempt < SETTINGS.max_attempts - 1:
            command(logic, "resume", attempt + 3.0)
            assert data_items(sent(s, attempt + 3.0)) == [0]
            command(logic, "pause")
    assert s.tasks["S_A"].finished and not s.done
    ok, body = command(logic, "retry_failed", 9.0, ids=["S_A/0"])
    assert ok and body["retried"] == [{"item_id": "S_A/0", "new_item_id": "S_A/1"}]
    assert s.tasks["S_A"].failed == [] and not s.tasks["S_A"].finished
    command(logic, "resume", 9.0)
    assert data_items(sent(s, 9.0)) == [1]
    ack(s, "S_A", [1], 9.5)
    assert s.done and s.ended_by == "completed" and s.tasks["S_A"].collected == 1
    assert logic.status(9.5)["tasks"]["S_A"]["handed_out"] == 1


def test_status_reads_the_scheduler_counters():
    s, logic = running(n=100)
    sent(s)
    s.tick(0.0)
    ack(s, "S_A", [0, 1], 1.5)
    s.tick(2.0)
    status = logic.status(2.0)
    task = status["tasks"]["S_A"]
    assert status["state"] == run_state(s) == "running"
    assert task["collected"] == 2 and task["in_flight"] == 0 and task["size"] is None
    assert task["rate"] == pytest.approx(1.0)
    assert status["collector"]["connected"] and status["collector"]["last_ack_age_s"] == 0.5
    (worker,) = status["workers"]
    assert worker["task_type"] == "S_A" and worker["done"] == 2 and worker["share"] == 1.0
    json.dumps(status)  # plain data
    protocol.decode(protocol.Codec(1 << 20).control_reply(1, True, status))


# -- real processes -------------------------------------------------------------------------


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


@pytest.fixture
def ep(endpoints, tmp_path):
    kind = endpoints.kind
    endpoints.control = (
        f"tcp://127.0.0.1:{free_port()}" if kind == "tcp" else f"ipc://{tmp_path}/control.ipc"
    )
    endpoints.log = tmp_path / "items.log"
    return endpoints


@pytest.fixture
def operator_keys(keys):  # noqa: F811
    """The ``keys`` of test_security plus one operator pair in ``authorized/operators/``."""
    (keys.authorized / "operators").mkdir()
    public, _ = generate_keys(keys.dir, "operator")
    shutil.copy(public, keys.authorized / "operators")
    return keys


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


def lone_distributor(procs, ep, env=None):
    """A distributor with nobody else: it waits for its collector and answers operators."""
    procs.start("distributor", distributor(ep, make_task(ep.worker, 10), env))


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


def test_garbage_on_the_control_socket_is_dropped_and_counted(procs, ep):
    lone_distributor(procs, ep)
    control = Control(ep.control)
    wait_for(control, lambda s: True)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.connect(ep.control)
        codec = protocol.Codec(1 << 20)
        sock.send_multipart([b"junk"])
        sock.send_multipart([bytes((protocol.VERSION, 0x30)), b"\xc1"])  # CONTROL, undecodable
        sock.send_multipart(codec.ready("FIRST", 1, 1))  # a kind not taken here
        sock.send_multipart([b"a", b"b", b"c", b"d"])
        sock.send_multipart(codec.control(7, "status", {}))  # then a good one: answered
        assert sock.poll(5000)
        reply = protocol.decode(sock.recv_multipart())
        assert reply.request_id == 7 and reply.ok
    finally:
        sock.close(0)
        ctx.term()
    dropped = control.status()["dropped"]
    assert sum(n for k, n in dropped.items() if k.startswith("control: ")) == 4, dropped
    result = subprocess.run(
        [sys.executable, "-m", "zmqpipeline", "status", ep.control],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0 and "waiting for collector" in result.stdout, result
    assert "dropped messages: control" in result.stdout
    control.stop()
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
