"""Recurring jobs with real processes over ipc: a distributor (control endpoint, journal),
a collector and workers, each forked. Workers write one JSON line per run start and end
(wall clock, pid, the job's ``due`` time) to their own file; the test reads those files
and the distributor's answers to ``schedule_*`` commands. Waits are on those files or
answers, with a deadline; the only sleeps are the scheduled windows themselves."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support.pipelines import load, make_collector

from zmqpipeline import (
    Backoff,
    Control,
    ControlError,
    Distributor,
    EndpointAddress,
    Schedule,
    ScheduledTask,
    SingleThreadedWorker,
    StopJob,
    TaskType,
    UnsetJob,
)

pytest.importorskip("dateutil", reason="RRULEs need python-dateutil (pip install '.[schedule]')")
pytestmark = pytest.mark.timeout(90)

TaskType.register_type("JOBS")


def task_for(ep: SimpleNamespace, jobs: dict[str, Any], **kw: Any) -> type[ScheduledTask]:
    class Jobs(ScheduledTask):
        task_type = TaskType("JOBS")
        endpoint = EndpointAddress(ep.worker)
        schedule = Schedule(jobs=jobs, **kw)

    return Jobs


def worker_for(ep: SimpleNamespace, runs: Path) -> type[SingleThreadedWorker]:
    """A worker that does what the job's data says: ``sleep`` seconds, then ``do``:
    ``stop``, ``unset``, ``backoff`` (``s`` seconds) or nothing."""

    class JobWorker(SingleThreadedWorker):
        task_type = TaskType("JOBS")
        endpoint = EndpointAddress(ep.worker)
        collector_endpoint = EndpointAddress(ep.collector)

        def handle_execution(self, data, *args, **kwargs):
            mine = runs / f"runs-{os.getpid()}.jsonl"
            line = {"job": data["job"], "due": data["due"], "pid": os.getpid()}

            def write(event: str) -> None:
                with open(mine, "a") as out:
                    out.write(json.dumps({**line, "ev": event, "t": time.time()}) + "\n")

            write("start")
            todo = data["data"]
            time.sleep(todo.get("sleep", 0.0))  # the job's work
            write("end")
            if todo.get("do") == "stop":
                raise StopJob("asked to stop")
            if todo.get("do") == "unset":
                raise UnsetJob("asked to go")
            if todo.get("do") == "backoff":
                return Backoff(todo["s"], {"backed_off": True})
            return {"ok": True}

    return JobWorker


def run_distributor(ep: SimpleNamespace, task: type[ScheduledTask], journal: Path) -> None:
    dist = Distributor(
        ep.collector, ep.ack, tasks=[task], control_endpoint=ep.control, journal=journal
    )
    report = dist.run()
    with open(ep.report, "w") as out:
        json.dump({"failed": report.failed, "ended_by": report.ended_by}, out)


def runs_of(runs: Path) -> list[dict[str, Any]]:
    lines = []
    for path in runs.glob("runs-*.jsonl"):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line]
    return sorted(lines, key=lambda r: r["t"])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except ControlError:
            found = None  # not up yet
        if found:
            return found
        time.sleep(0.05)  # polling files and the control endpoint for the awaited state
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def ep(endpoints: SimpleNamespace, tmp_path: Path) -> SimpleNamespace:
    endpoints.control = f"ipc://{tmp_path}/control.ipc"
    endpoints.runs = tmp_path / "runs"
    endpoints.runs.mkdir()
    endpoints.journal = tmp_path / "journal" / "distributor.sqlite"
    endpoints.journal.parent.mkdir()
    return endpoints


def start_run(procs, ep, task, workers: int = 2, distributor: bool = True) -> None:
    collector = make_collector(ep)
    procs.start("collector", lambda: collector().run())
    worker = worker_for(ep, ep.runs)
    for i in range(workers):
        procs.start(f"worker{i}", lambda: worker().run())
    if distributor:
        procs.start("distributor", lambda: run_distributor(ep, task, ep.journal))


def call(ep: SimpleNamespace, command: str, **args: Any) -> dict[str, Any]:
    return Control(ep.control, timeout=5.0).call(command, args)


def finish(procs, ep, killed: str | None = None) -> None:
    """Drain the run: it ends once what is in flight has an outcome; every process exits
    0 (but the one ``killed``)."""
    Control(ep.control, timeout=5.0).drain()
    codes = procs.join(30)
    if killed is not None:
        assert codes.pop(killed) == -signal.SIGKILL
    assert all(code == 0 for code in codes.values()), codes


def by_job(runs: list[dict[str, Any]], event: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        if r["ev"] == event:
            out.setdefault(r["job"], []).append(r)
    return out


WINDOW_S = 30.0


def test_twenty_jobs_run_at_their_times_and_never_two_at_once(procs, ep):
    """20 jobs on rules of 1, 2 and 3 s for 30 s, each run 5 or 30 ms long, on three
    workers: every run (the first ones too) starts within 0.5 s of its due time, every
    time of each rule is run (none made up, none skipped), and a job's runs never
    overlap. Every 6 s all 20 are due at once: the burst is split among the workers.

    The jobs are set once the three workers have joined (``schedule_load`` through the
    control endpoint): a job due before any worker is there waits for one, which says
    nothing of the schedule. They count from the next whole second."""
    intervals = {f"j{i:02d}": 1 + i % 3 for i in range(20)}
    jobs = [
        [job, f"FREQ=SECONDLY;INTERVAL={n}", {"sleep": 0.005 + 0.025 * (i % 2)}]
        for i, (job, n) in enumerate(intervals.items())
    ]
    start_run(procs, ep, task_for(ep, {}), workers=3)
    wait_for(
        "three workers",
        lambda: len([w for w in call(ep, "status")["workers"] if not w["lost"]]) == 3,
    )
    assert call(ep, "schedule_load", jobs=jobs)["set"] == 20
    first_due = min(n["at"] for n in call(ep, "status")["schedule"]["JOBS"]["next"])
    time.sleep(max(0.0, first_due + WINDOW_S - time.time()))  # the window the jobs run in
    finish(procs, ep)
    runs = runs_of(ep.runs)
    starts, ends = by_job(runs, "start"), by_job(runs, "end")
    assert sorted(starts) == sorted(intervals)
    worst = 0.0
    for job, n in intervals.items():
        mine = starts[job]
        dues = [r["due"] for r in mine]
        assert dues[0] == first_due, (job, dues)
        assert dues == [first_due + k * n for k in range(len(dues))], (job, dues)  # every time
        assert dues[-1] >= first_due + WINDOW_S - n, (job, dues)  # ...to the window's end
        late = [round(r["t"] - r["due"], 3) for r in mine]
        assert all(-0.001 <= x <= 0.5 for x in late), (job, late)
        worst = max(worst, *late)
        spans = sorted(zip([r["t"] for r in mine], [r["t"] for r in ends[job]], strict=True))
        for (_, end), (start, _) in pairwise(spans):
            assert start >= end, (job, spans)  # never two runs of a job at once
    print(f"20 jobs for {WINDOW_S:g} s: {len(runs) // 2} runs, worst lateness {worst:.3f} s")


def test_a_worker_killed_mid_job_runs_it_again_once(procs, ep):
    jobs = {"slow": ("FREQ=MINUTELY", {"sleep": 2.0})}
    start_run(procs, ep, task_for(ep, jobs), workers=2)
    first = wait_for("the job to start", lambda: by_job(runs_of(ep.runs), "start").get("slow"))
    victim = first[0]["pid"]
    name = next(n for n, p in procs.started.items() if p.pid == victim)
    procs.kill(name)
    again = wait_for(
        "the job to run again",
        lambda: [r for r in runs_of(ep.runs) if r["ev"] == "end" and r["job"] == "slow"],
    )
    tell = wait_for(
        "its outcome",
        lambda: (j := call(ep, "schedule_tell", job="slow")["job"])["runs"] and j,
    )
    assert tell["status"] == "scheduled" and [r["outcome"] for r in tell["runs"]] == ["ok"]
    starts = by_job(runs_of(ep.runs), "start")["slow"]
    assert [r["pid"] for r in starts] == [victim, again[0]["pid"]] and victim != again[0]["pid"]
    assert starts[0]["due"] == starts[1]["due"]  # the same run, once more, not a new one
    finish(procs, ep, killed=name)


def test_stopjob_unsetjob_a_backoff_and_a_timeout(procs, ep):
    jobs = {
        "stop": ("CONTINUE", {"do": "stop"}),
        "unset": ("CONTINUE", {"do": "unset"}),
        "backoff": ("CONTINUE", {"do": "backoff", "s": 1.0}),
        "sleepy": ("CONTINUE", {"sleep": 3.0}),
    }
    task = task_for(ep, jobs, timeout_s=1.0)
    start_run(procs, ep, task, workers=3)

    def statuses() -> dict[str, str]:
        return {s["job"]: s["status"] for s in call(ep, "schedule_statuses")["statuses"]}

    wait_for("the outcomes", lambda: statuses().get("sleepy") == "timed out", timeout=10)
    wait_for("three backoffs", lambda: len(by_job(runs_of(ep.runs), "end").get("backoff", [])) >= 3)
    got = statuses()
    assert got["stop"] == "stopped" and got["unset"] == "unset"
    assert "unset" not in [job for job, _ in call(ep, "schedule_list")["jobs"]]
    assert [r for r in call(ep, "schedule_list")["jobs"] if r[0] == "stop"] == [["stop", "STOP"]]
    sleepy = call(ep, "schedule_tell", job="sleepy")["job"]
    assert "timed out" in sleepy["last_error"] and sleepy["next_run"] is None
    finish(procs, ep)
    runs = by_job(runs_of(ep.runs), "start")
    assert len(runs["stop"]) == 1 and len(runs["unset"]) == 1 and len(runs["sleepy"]) == 1
    starts = [r["t"] for r in runs["backoff"]]
    ends = [r["t"] for r in by_job(runs_of(ep.runs), "end")["backoff"]]
    assert all(s - e >= 1.0 for e, s in zip(ends, starts[1:], strict=False)), (ends, starts)
    report = load(ep.report)
    assert [f["error"].splitlines()[-1] for f in report["failed"]] == [
        "timed out: no outcome in 1 s"
    ]


def test_a_distributor_killed_and_restarted_keeps_every_schedule_and_runs_missed_slots_once(
    procs, ep
):
    jobs = {
        "every2": ("FREQ=SECONDLY;INTERVAL=2", {}),
        "stop": ("CONTINUE", {"do": "stop"}),
    }
    task = task_for(ep, jobs)
    start_run(procs, ep, task, workers=1)
    wait_for(
        "two runs of every2", lambda: len(by_job(runs_of(ep.runs), "end").get("every2", [])) >= 2
    )
    call(ep, "schedule_set", job="added", rule="FREQ=SECONDLY;INTERVAL=3", data={"x": 1})
    before = wait_for(
        "statuses written",
        lambda: (t := call(ep, "schedule_tell", job="every2")["job"])["runs"] and t,
    )
    time.sleep(0.3)  # the store commits every 0.1 s: let the last outcomes reach it
    procs.kill("distributor")
    procs.started["distributor"].join(5)
    killed_at = time.time()
    time.sleep(5.0)  # down for 5 s: every2 misses two of its times
    procs.start("distributor2", lambda: run_distributor(ep, task, ep.journal))
    after = wait_for("the restarted distributor", lambda: call(ep, "schedule_statuses")["statuses"])
    listed = dict(call(ep, "schedule_list")["jobs"])
    assert listed == {
        "every2": "FREQ=SECONDLY;INTERVAL=2",
        "stop": "STOP",
        "added": "FREQ=SECONDLY;INTERVAL=3",
    }
    assert {s["job"]: s["status"] for s in after}["stop"] == "stopped"
    restarted = wait_for(
        "every2 to run after the restart",
        lambda: [r for r in by_job(runs_of(ep.runs), "start")["every2"] if r["t"] > killed_at],
    )
    time.sleep(1.5)  # every2's next time on its grid is at most 2 s later
    tell = call(ep, "schedule_tell", job="every2")["job"]
    assert len(tell["runs"]) >= len(before["runs"]) + 1  # its history kept, and added to
    late = [r for r in by_job(runs_of(ep.runs), "start")["every2"] if r["t"] > killed_at]
    first_due = restarted[0]["due"]
    assert first_due < killed_at + 5.0  # a missed time, run at the restart...
    missed = [r for r in late if r["due"] < late[0]["t"] - 0.5]
    assert len(missed) == 1, late  # ...once, not once per missed slot
    finish(procs, ep, killed="distributor")
