"""Streaming stages and open-ended tasks (issue 16) with real processes: a 3-stage chain
with fan-out and a filter, a killed middle-stage worker, bounded memory under a slow
last stage, concurrent pushers, and ``zmqpipeline list``/``run`` of the stages example."""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support.cli import zmqpipeline
from support.paths import ROOT
from support.pipelines import load, make_collector, make_task, make_worker
from support.procs import FORK
from support.stages import open_class, stage_class

from zmqpipeline import (
    Collector,
    Distributor,
    EndpointAddress,
    Pusher,
    PushError,
    Settings,
    Task,
)
from zmqpipeline.runtime import runtime

pytestmark = pytest.mark.timeout(120)


# -- real processes -----------------------------------------------------------------------


def _fan_out(result, item_id):
    return [{"i": result["i"] * 10 + k, "src": item_id} for k in range(3)]


def _evens(result, item_id):
    return {"i": result["i"], "src": item_id} if result["i"] % 2 == 0 else None


def _chain(ep: SimpleNamespace, n: int) -> list[type[Task]]:
    first = make_task(ep.worker, n, "FIRST")
    second = stage_class("SECOND", ["FIRST"], ep.worker2, derive=_fan_out)
    third = stage_class("THIRD", ["SECOND"], ep.worker3, derive=_evens)
    return [first, second, third]


def _run_distributor(ep: SimpleNamespace, tasks: list[type[Task]], **kw: Any) -> None:
    report = Distributor(ep.collector, ep.ack, tasks=tasks, **kw).run()
    with open(ep.report, "w") as out:
        json.dump(asdict(report), out)


def _ids(items: list[Any], task_type: str) -> list[int]:
    return sorted(data["i"] for tt, data, _, _ in items if tt == task_type)


def _expected(n: int) -> dict[str, list[int]]:
    second = sorted(i * 10 + k for i in range(1, n + 1) for k in range(3))
    return {
        "FIRST": list(range(1, n + 1)),
        "SECOND": second,
        "THIRD": [i for i in second if i % 2 == 0],
    }


@pytest.fixture
def ep3(endpoints: SimpleNamespace, tmp_path: Path) -> SimpleNamespace:
    endpoints.worker3 = f"ipc://{tmp_path}/worker3.ipc"
    endpoints.push = f"ipc://{tmp_path}/push.ipc"
    return endpoints


def test_three_stage_chain_with_fan_out_and_filter_collects_exact_ids(procs, ep3):
    n = 30
    tasks = _chain(ep3, n)
    collector = make_collector(ep3)
    procs.start("collector", lambda: collector().run())
    for tt, worker_ep in (("FIRST", ep3.worker), ("SECOND", ep3.worker2), ("THIRD", ep3.worker3)):
        worker = make_worker(worker_ep, ep3.collector, tt)
        procs.start(f"worker {tt}", lambda worker=worker: worker().run())
    procs.start("distributor", lambda: _run_distributor(ep3, tasks))
    codes = procs.join(60)
    assert set(codes.values()) == {0}, codes
    items, report = load(ep3.results)["items"], load(ep3.report)
    expected = _expected(n)
    for tt, ids in expected.items():
        assert _ids(items, tt) == ids, tt
    assert report["collected"] == {tt: len(ids) for tt, ids in expected.items()}
    third = report["tasks"]["THIRD"]
    assert (third["received"], third["derived"], third["filtered"]) == (3 * n, 2 * n, n)
    assert third["sources"] == ["SECOND"] and report["failed"] == []


def test_killed_middle_stage_worker_loses_nothing_and_doubles_nothing(procs, ep3):
    n = 60
    first = make_task(ep3.worker, n, "FIRST", delay=0.005)
    third = stage_class("THIRD", ["SECOND"], ep3.worker3, derive=_evens)
    second_slow = lambda r, i: [{**x, "delay": 0.01} for x in _fan_out(r, i)]  # noqa: E731
    second = stage_class("SECOND", ["FIRST"], ep3.worker2, derive=second_slow)
    halfway = FORK.Event()
    collector = make_collector(ep3, progress=halfway, progress_after=60)
    procs.start("collector", lambda: collector().run())
    w1 = make_worker(ep3.worker, ep3.collector, "FIRST")
    w2 = make_worker(ep3.worker2, ep3.collector, "SECOND")
    w3 = make_worker(ep3.worker3, ep3.collector, "THIRD")
    procs.start("first", lambda: w1().run())
    procs.start("victim", lambda: w2().run())
    procs.start("steady", lambda: w2().run())
    procs.start("third", lambda: w3().run())
    procs.start("distributor", lambda: _run_distributor(ep3, [first, second, third]))
    assert halfway.wait(60)
    procs.kill("victim", signal.SIGKILL)
    codes = procs.join(90)
    assert codes.pop("victim") == -signal.SIGKILL
    assert set(codes.values()) == {0}, codes
    items, report = load(ep3.results)["items"], load(ep3.report)
    for tt, ids in _expected(n).items():
        assert _ids(items, tt) == ids, tt  # every id once: nothing lost, nothing doubled
    assert report["failed"] == [] and report["tasks"]["THIRD"]["received"] == 3 * n
    assert report["tasks"]["SECOND"]["retries"] > 0  # the victim held items: re-issued


class _CountingCollector(Collector):
    """Counts per task type only: its own memory stays flat whatever flows."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def handle_collection(self, data, task_type, msgtype):
        self.counts[task_type] = self.counts.get(task_type, 0) + 1

    def handle_finished(self, data, task_type):
        with open(self.results_path, "w") as out:
            json.dump(self.counts, out)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_slow_last_stage_keeps_distributor_and_collector_memory_bounded(procs, ep3):
    n = 100_000
    first = make_task(ep3.worker, n, "FIRST")
    second = stage_class("SECOND", ["FIRST"], ep3.worker2, derive=lambda r, i: {"i": r["i"]})
    collector = type("Counting", (_CountingCollector,), {"results_path": str(ep3.results)})
    collector.endpoint = EndpointAddress(ep3.collector)
    collector.ack_endpoint = EndpointAddress(ep3.ack)
    settings = Settings.from_env(stage_backlog=2000)
    w1 = make_worker(ep3.worker, ep3.collector, "FIRST")
    w2 = make_worker(ep3.worker2, ep3.collector, "SECOND")

    def slow_second():  # the last stage: slower than the first by a sleep per item
        w2.handle_execution = lambda self, data, *a, **k: time.sleep(0.00005) or data
        w2().run()

    procs.start("collector", lambda: collector().run())
    procs.start("first", lambda: w1().run())
    procs.start("second", slow_second)
    dist = procs.start(
        "distributor", lambda: _run_distributor(ep3, [first, second], settings=settings)
    )
    col = procs.started["collector"]
    samples: list[tuple[float, float]] = []
    while dist.is_alive():
        try:
            samples.append((_rss_mib(dist.pid), _rss_mib(col.pid)))
        except (FileNotFoundError, ProcessLookupError):
            break
        dist.join(0.2)  # the sampling period (an event: the distributor's exit)
    codes = procs.join(120)
    assert set(codes.values()) == {0}, codes
    assert load(ep3.results) == {"FIRST": n, "SECOND": n}
    peak = load(ep3.report)["tasks"]["SECOND"]["backlog_peak"]
    assert 1000 <= peak <= 2000, peak  # the bound held the source back (fan-out 1)
    samples = [s for s in samples if s[0] and s[1]]  # not after a role's exit
    assert len(samples) >= 10, samples
    early = samples[len(samples) // 5 : len(samples) // 2]
    late = samples[len(samples) // 2 :]
    for role, k in (("distributor", 0), ("collector", 1)):
        grown = max(s[k] for s in late) - max(s[k] for s in early)
        print(f"{role}: RSS {min(s[k] for s in samples):.1f}-{max(s[k] for s in samples):.1f} MiB")
        assert grown < 8, f"{role} RSS grew {grown:.1f} MiB in the second half"
        assert max(s[k] for s in samples) < 120, role


def test_four_concurrent_pushers_get_every_item_collected_once(procs, ep3):
    per_pusher, pushers = 2500, 4
    pushed, other = open_class("PUSHED", ep3.worker), open_class("PUSHED2", ep3.worker2)
    collector = make_collector(ep3)
    worker = make_worker(ep3.worker, ep3.collector, "PUSHED")
    other_worker = make_worker(ep3.worker2, ep3.collector, "PUSHED2")
    procs.start("collector", lambda: collector().run())
    procs.start("worker", lambda: worker().run())
    procs.start("other worker", lambda: other_worker().run())
    bound = FORK.Event()

    def distributor() -> None:  # says when its push endpoint is bound
        real = runtime.RoleRuntime.open

        def open_and_announce(self, socket_type, endpoint, **kwargs):
            sock = real(self, socket_type, endpoint, **kwargs)
            if endpoint == ep3.push:
                bound.set()
            return sock

        runtime.RoleRuntime.open = open_and_announce  # type: ignore[method-assign]
        _run_distributor(ep3, [pushed, other], push_endpoint=ep3.push)

    procs.start("distributor", distributor)
    assert bound.wait(30), "the push endpoint was never bound"
    errors: list[BaseException] = []

    def push(k: int) -> None:
        items = [{"i": k * per_pusher + j + 1} for j in range(per_pusher)]
        try:
            assert Pusher(ep3.push).push_many("PUSHED", items) == per_pusher
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(k,)) for k in range(pushers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    pusher = Pusher(ep3.push, timeout=5)
    with pytest.raises(PushError, match="no task 'NOPE' in this run"):
        pusher.push("NOPE", {"i": 0})
    pusher.close("PUSHED")
    with pytest.raises(PushError, match="task PUSHED is closed"):
        pusher.push("PUSHED", {"i": 0})
    assert pusher.push("PUSHED2", {"i": -1}) == 1
    pusher.close("PUSHED2")
    codes = procs.join(60)
    assert set(codes.values()) == {0}, codes
    items, report = load(ep3.results)["items"], load(ep3.report)
    assert _ids(items, "PUSHED") == list(range(1, pushers * per_pusher + 1))
    assert _ids(items, "PUSHED2") == [-1]
    assert report["tasks"]["PUSHED"]["pushed"] == pushers * per_pusher
    with pytest.raises(PushError, match="no distributor at"):
        Pusher(ep3.push).push("PUSHED", {})


# -- the command line ---------------------------------------------------------------------


def test_list_shows_stages_and_run_reports_each_stage():
    listed = zmqpipeline("list", "examples/stages", cwd=ROOT, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "stage fed by URLS" in listed.stdout and "stage fed by FETCH" in listed.stdout
    run = zmqpipeline("run", "examples/stages", "--quiet", cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "FETCH   180 results" in run.stdout and "PARSE   540 results" in run.stdout
    assert "stage fed by URLS: 200 result(s) in, 180 item(s) derived, 20 filtered" in run.stdout
