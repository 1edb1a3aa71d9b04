"""Recurring jobs through the distributor's real Scheduler and ControlLogic, no sockets:
the wall clock is held by the test (``s.recurring.clock``), the monotonic ``now`` passed
in. Each outcome arrives the way it does in a run: on the ACK (ok, backoff), as a FAIL
(StopJob, UnsetJob, an error through the retry policy), or by the clock (a timeout)."""

from __future__ import annotations

from typing import Any

import pytest
from support.scheduling import EP, SETTINGS, sent
from support.scheduling import ack as ack_at

from zmqpipeline import EndpointAddress, Schedule, ScheduledTask, TaskType, protocol
from zmqpipeline.distributor.control import ControlLogic
from zmqpipeline.distributor.scheduler import Scheduler

pytest.importorskip("dateutil", reason="RRULEs need python-dateutil (pip install '.[schedule]')")

TaskType.register_type("SCHED")
T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def scheduled(jobs: dict[str, Any], **kw: Any) -> type[ScheduledTask]:
    class Poll(ScheduledTask):
        task_type = TaskType("SCHED")
        endpoint = EndpointAddress(EP)
        schedule = Schedule(jobs=jobs, **kw)

    return Poll


def start(jobs: dict[str, Any], capacity: int = 4, **kw: Any) -> tuple[Scheduler, Clock]:
    s = Scheduler([scheduled(jobs, **kw)()], SETTINGS, run=42)
    clock = Clock()
    s.recurring.clock = clock
    s.on_collector_hello(b"collector", 0.0)
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("SCHED", capacity, capacity, 1), 0.0)
    return s, clock  # the first step() welcomes w1


def step(s: Scheduler, clock: Clock, t: float) -> dict[int, str]:
    """Advance both clocks to ``T0 + t``, dispatch; the items sent: seq -> job."""
    clock.t = T0 + t
    s.dispatch(t)
    return {
        seq: payload["job"]
        for _, _, kind, body in sent(s, t)
        if kind == protocol.DATA
        for seq, payload in body[1]
    }


def status(s: Scheduler, job: str) -> str:
    return s.recurring.books["SCHED"].jobs[job].status


def fail(s: Scheduler, seq: int, exc_types: list[str], now: float, error: str = "Err: x") -> None:
    s.recurring.clock.t = T0 + now  # type: ignore[attr-defined]
    s.on_worker_message(EP, b"w1", protocol.Fail(seq, error, exc_types), now)


def ack(s: Scheduler, task_type: str, seqs: list[int], now: float, **kw: Any) -> None:
    s.recurring.clock.t = T0 + now  # type: ignore[attr-defined]
    ack_at(s, task_type, seqs, now, **kw)


def test_results_of_a_scheduled_task_ride_on_their_ack():
    s = Scheduler([scheduled({})()], SETTINGS, run=42)
    s.on_collector_hello(b"collector", 0.0)
    s.start({}, 0.0)
    (start_msg,) = [body for _, _, kind, body in sent(s) if kind == protocol.START]
    assert "SCHED" in start_msg[3]  # START's forward list


def test_a_due_job_goes_out_with_its_data_and_never_twice_while_it_runs():
    s, clock = start({"a": ("FREQ=SECONDLY;INTERVAL=2", {"path": "/x"}), "b": "CONTINUE"})
    out = step(s, clock, 0.0)
    assert sorted(out.values()) == ["a", "b"]
    items = s.tasks["SCHED"].in_flight
    seq_a = next(seq for seq, j in out.items() if j == "a")
    assert items[seq_a].payload == {"job": "a", "data": {"path": "/x"}, "due": T0}
    assert step(s, clock, 5.0) == {}  # both still running: nothing again
    ack(s, "SCHED", [seq_a], 5.0, results={seq_a: {"found": 1}})
    assert status(s, "a") == "scheduled" and s.recurring.books["SCHED"].jobs["a"].next_run == T0 + 6
    assert s.next_wakeup(5.0) == pytest.approx(6.0)  # the loop wakes when it is due
    assert list(step(s, clock, 6.0).values()) == ["a"]


def test_a_backoff_on_the_ack_delays_the_next_run():
    s, clock = start({"c": "CONTINUE"})
    (seq,) = step(s, clock, 0.0)
    ack(s, "SCHED", [seq], 1.0, results={seq: {"backoff_s": 3.0}})
    assert status(s, "c") == "backoff"
    assert step(s, clock, 3.9) == {}
    assert list(step(s, clock, 4.0).values()) == ["c"]


def test_stopjob_and_unsetjob_end_the_run_as_asked_and_the_collector_skips_them():
    s, clock = start({"s": "CONTINUE", "u": "CONTINUE", "other": "CONTINUE"})
    out = {j: seq for seq, j in step(s, clock, 0.0).items()}
    fail(s, out["s"], ["StopJob", "ZmqPipelineError", "Exception"], 1.0, "StopJob: gone")
    fail(s, out["u"], ["UnsetJob", "ZmqPipelineError", "Exception"], 1.0)
    skips = [body for _, _, kind, body in sent(s, 1.0) if kind == protocol.SKIP]
    assert sorted(b[2] for b in skips) == sorted([out["s"], out["u"]])
    assert status(s, "s") == "stopped" and s.recurring.books["SCHED"].jobs["s"].rule == "STOP"
    assert status(s, "u") == "unset"
    state = s.tasks["SCHED"]
    assert state.failed == [] and state.collected == 2  # outcomes, not failures
    assert s.recurring.books["SCHED"].jobs["s"].history[-1].error == "StopJob: gone"
    assert step(s, clock, 10.0) == {}  # neither again; "other" still runs


def test_an_error_follows_the_retry_policy_then_the_job_is_failed_and_not_rescheduled():
    s, clock = start({"f": "CONTINUE"})
    (seq,) = step(s, clock, 0.0)
    fail(s, seq, ["ValueError", "Exception"], 1.0, "ValueError: 1")
    assert status(s, "f") == "queued"  # a retry, not an outcome yet
    for attempt, t in ((2, 2.0), (3, 4.0)):
        again = step(s, clock, t)
        assert list(again) == [seq]  # the same run, tried again
        fail(s, seq, ["ValueError", "Exception"], t, f"ValueError: {attempt}")
    assert status(s, "f") == "failed"
    job = s.recurring.books["SCHED"].jobs["f"]
    assert job.last_error == "ValueError: 3" and job.next_run is None
    assert job.history[-1].worker == "w1"
    assert [f["item_id"] for f in s.tasks["SCHED"].failed] == [f"SCHED/{seq}"]
    assert step(s, clock, 60.0) == {}


def test_a_run_over_its_timeout_is_timed_out():
    s, clock = start({"slow": "CONTINUE", "quick": "CONTINUE"}, timeout_s=5.0)
    out = {j: seq for seq, j in step(s, clock, 0.0).items()}
    ack(s, "SCHED", [out["quick"]], 0.5, results={out["quick"]: {}})
    for t in (1.0, 2.0, 3.0, 4.0, 4.9, 5.1):  # w1 beats, working on "slow" (sent at 0)
        s.on_worker_message(EP, b"w1", protocol.Heartbeat(b"w1"), t)
        clock.t = T0 + t
        s.tick(t)
        if t == 4.9:
            assert status(s, "slow") == "queued"
    assert status(s, "slow") == "timed out"
    assert "timed out" in s.recurring.books["SCHED"].jobs["slow"].last_error
    assert out["slow"] not in s.tasks["SCHED"].in_flight
    skips = [body[2] for _, _, kind, body in sent(s, 5.1) if kind == protocol.SKIP]
    assert skips == [out["slow"]]  # a late result is a duplicate: it changes nothing


def test_a_jobs_own_timeout_overrides_the_schedules():
    s, clock = start({"slow": "CONTINUE"}, timeout_s=60.0)
    logic = ControlLogic(s, "ipc://c.ipc")
    ok, body = logic.handle(
        protocol.Control(1, "schedule_set", {"job": "brief", "rule": "NOW", "timeout_s": 2}), 0.0
    )
    assert ok and body["job"]["timeout_s"] == 2.0
    assert sorted(step(s, clock, 0.0).values()) == ["brief", "slow"]
    for t in (1.0, 2.1):
        s.on_worker_message(EP, b"w1", protocol.Heartbeat(b"w1"), t)
        clock.t = T0 + t
        s.tick(t)
    assert (status(s, "brief"), status(s, "slow")) == ("timed out", "queued")
    assert "no outcome in 2 s" in s.recurring.books["SCHED"].jobs["brief"].last_error


def test_a_worker_killed_mid_job_runs_it_again_once():
    s, clock = start({"j": "FREQ=SECONDLY;INTERVAL=2"})
    (seq,) = step(s, clock, 0.0)
    s.on_worker_message(EP, b"w2", protocol.Ready("SCHED", 4, 4, 1), 0.0)
    sent(s)
    for t in (1.0, 2.0, 3.0, 4.0, 5.0):  # w2 beats, w1 has gone silent (killed)
        s.on_worker_message(EP, b"w2", protocol.Heartbeat(b"w2"), t)
        s.tick(t)
    assert b"w1" not in s.tasks["SCHED"].workers
    again = step(s, clock, 5.0)
    assert list(again.values()) == ["j"]  # the same run, to the worker left
    assert step(s, clock, 7.0) == {}  # and only once
    ack(s, "SCHED", list(again), 7.0, by=b"w2", results={seq: {}})
    assert status(s, "j") == "scheduled"


def test_the_task_ends_when_idle_once_no_job_is_due_again():
    s, clock = start({"x": "FREQ=SECONDLY;COUNT=2"}, end_when_idle=True)
    (seq,) = step(s, clock, 0.0)
    ack(s, "SCHED", [seq], 0.2, results={seq: {}})
    (seq,) = step(s, clock, 1.0)
    assert not s.done
    ack(s, "SCHED", [seq], 1.2, results={seq: {}})
    assert status(s, "x") == "done" and s.done


def test_schedule_commands_set_list_tell_statuses_unset_and_bad_arguments():
    s, clock = start({"a": "CONTINUE", "b": "BOGUS"})
    logic = ControlLogic(s, "ipc://c.ipc")
    step(s, clock, 0.0)

    def call(command: str, **args: Any) -> tuple[bool, dict[str, Any]]:
        return logic.handle(protocol.Control(1, command, args), 0.0)

    ok, body = call("schedule_set", job="n", rule="FREQ=MINUTELY", data={"k": 1}, after=T0 + 60)
    assert ok and body["job"]["next_run"] == T0 + 60 and body["job"]["status"] == "scheduled"
    assert call("schedule_list")[1]["jobs"] == [
        ["a", "CONTINUE"],
        ["b", "BOGUS"],
        ["n", "FREQ=MINUTELY"],
    ]
    tell = call("schedule_tell", job="a")[1]["job"]
    assert tell["status"] == "running" and tell["running_on"] == "w1"
    statuses = {e["job"]: e for e in call("schedule_statuses")[1]["statuses"]}
    assert statuses["b"]["status"] == "bad rule" and "unknown rule" in statuses["b"]["last_error"]
    assert [e["job"] for e in call("schedule_statuses", before=T0 - 1)[1]["statuses"]] == []
    assert call("schedule_unset", job="n")[0]
    assert "n" not in [j for j, _ in call("schedule_list")[1]["jobs"]]
    snapshot = logic.status(0.0)["schedule"]["SCHED"]
    assert snapshot["running"] == 1 and snapshot["jobs"] == 2
    for command, args, says in [
        ("schedule_set", {"job": "x"}, "rule"),
        ("schedule_set", {"job": "x", "rule": "NOW", "data": [1]}, "data"),
        ("schedule_set", {"job": "x", "rule": "NOW", "after": "soon"}, "after"),
        ("schedule_tell", {"job": "nope"}, "no job 'nope'"),
        ("schedule_tell", {"job": "a", "task_type": "OTHER"}, "not a scheduled task"),
        ("schedule_load", {"jobs": [["x"]]}, "[job, rule, data]"),
    ]:
        ok, body = call(command, **args)
        assert not ok and says in body["error"], (command, body)
