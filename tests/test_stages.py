"""Streaming stages and open-ended tasks (issue 16): the bookkeeping driven directly with a
hand-held clock, then real processes: a 3-stage chain with fan-out and a filter, a killed
middle-stage worker, bounded memory under a slow last stage, and concurrent pushers."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import acks
import pytest
import zmq
from conftest import FORK
from pipelines import load, make_collector, make_task, make_worker
from test_cli import ROOT, zmqpipeline
from test_scheduler import EP, EP_B, SETTINGS, ack, data_items, make, sent, task_class

from zmqpipeline import (
    Collector,
    ConfigurationError,
    Distributor,
    EndpointAddress,
    Pusher,
    PushError,
    Settings,
    Task,
    TaskType,
    protocol,
)
from zmqpipeline.collector import CollectorLogic
from zmqpipeline.distributor.push import PushLogic
from zmqpipeline.runtime import runtime
from zmqpipeline.runtime.runtime import UserCodeError
from zmqpipeline.distributor.state import check_dependencies
from zmqpipeline.runtime.transport import DropCounter

pytestmark = pytest.mark.timeout(120)

for _name in ("THIRD", "PUSHED", "PUSHED2", "ST_A", "ST_B", "ST_C", "ST_P"):
    TaskType.register_type(_name)

EP_C = "ipc://c.ipc"


def stage_class(
    task_type: str,
    sources: list[str],
    endpoint: str = EP_B,
    derive: Any = None,
    collect_results: bool = True,
    dependencies: tuple[str, ...] = (),
) -> type[Task]:
    """A stage whose ``derive`` is ``derive(result, item_id)`` (default: one item per result)."""

    class Stage(Task):
        def derive(self, result, item_id):
            if derive is None:
                return {"from": item_id, **result}
            return derive(result, item_id)

    Stage.task_type = TaskType(task_type)
    Stage.endpoint = EndpointAddress(endpoint)
    Stage.sources = [TaskType(s) for s in sources]
    Stage.dependencies = [TaskType(d) for d in dependencies]
    Stage.collect_results = collect_results
    Stage.__name__ = f"Stage{task_type}"
    return Stage


def open_class(task_type: str, endpoint: str = EP) -> type[Task]:
    class Open(Task):
        open_ended = True

    Open.task_type = TaskType(task_type)
    Open.endpoint = EndpointAddress(endpoint)
    return Open


def join(s, endpoint: str, wid: bytes, task_type: str, capacity: int = 4) -> None:
    s.on_worker_message(endpoint, wid, protocol.Ready(task_type, capacity, capacity, 1), 0.0)
    s.on_worker_message(endpoint, wid, protocol.Credit(0), 0.0)


def credit(s, endpoint: str, wid: bytes, n: int, now: float) -> list[Any]:
    s.on_worker_message(endpoint, wid, protocol.Credit(n), now)
    s.dispatch(now)
    return sent(s, now)


# -- the bookkeeping, no sockets --------------------------------------------------------


def test_a_stage_derives_from_each_result_with_fan_out_and_filter():
    def three_or_none(result, item_id):
        return None if result["n"] % 2 else [{"k": k, "src": item_id} for k in range(3)]

    s = make(task_class("ST_A", 4), stage_class("ST_B", ["ST_A"], derive=three_or_none))
    s.start({}, 0.0)
    join(s, EP, b"a", "ST_A")
    join(s, EP_B, b"b", "ST_B", capacity=8)
    out = sent(s)
    start = next(body for _, _, kind, body in out if kind == protocol.START)
    assert start[3:] == [["ST_A"], []]  # ST_A's results ride on its ACKs
    assert data_items(out, b"a") == [0, 1, 2, 3] and data_items(out, b"b") == []
    ack(s, "ST_A", [0, 1], 0.1, results={0: {"n": 1}, 1: {"n": 2}})  # 1 filtered, 2 -> 3 items
    assert s.stages.summary("ST_B") == {
        "sources": ["ST_A"],
        "open_ended": False,
        "backlog": 3,
        "received": 2,
        "derived": 3,
        "filtered": 1,
        "backlog_peak": 3,
    }
    out = credit(s, EP_B, b"b", 0, 0.1)
    assert data_items(out, b"b") == [0, 1, 2]
    items = [p for _, _, kind, body in out if kind == protocol.DATA for _, p in body[1]]
    assert items[0] == {"k": 0, "src": "ST_A/1"}
    ack(s, "ST_B", [0, 1, 2], 0.2)
    assert not s.tasks["ST_B"].finished  # its source is still running
    ack(s, "ST_A", [2, 3], 0.3, results={2: {"n": 3}, 3: {"n": 4}})
    assert s.tasks["ST_A"].finished and not s.tasks["ST_B"].finished
    out = credit(s, EP_B, b"b", 3, 0.3)
    assert data_items(out, b"b") == [3, 4, 5] and s.tasks["ST_B"].task.is_complete
    ack(s, "ST_B", [3, 4, 5], 0.4)
    assert s.tasks["ST_B"].finished and s.done and s.tasks["ST_B"].collected == 6


def test_a_derived_item_goes_to_the_worker_that_said_it_has_room():
    # "full" holds 4 items, all of them done: their results wait to go with others, and it
    # asked for credit for all of them; "queued" holds 2 that it has not started.
    s = make(task_class("ST_A", 1), stage_class("ST_B", ["ST_A"]))
    s.start({}, 0.0)
    join(s, EP, b"a", "ST_A")
    join(s, EP_B, b"full", "ST_B", capacity=8)
    join(s, EP_B, b"queued", "ST_B", capacity=8)
    sent(s)
    stage = s.tasks["ST_B"]
    stage.workers[b"full"].held.update({90, 91, 92, 93})
    stage.workers[b"full"].credit = 8
    stage.workers[b"queued"].held.update({94, 95})
    stage.workers[b"queued"].credit = 2
    ack(s, "ST_A", [0], 0.1, results={0: {"n": 1}})
    s.dispatch(0.1)
    out = sent(s, 0.1)
    assert data_items(out, b"full") == [0] and data_items(out, b"queued") == []


def _a_source_item_fails_for_good(held_open: bool):
    """ST_A (2 items) feeds ST_B; ST_A/0 raises on every try and has failed for good at
    t=9. ``held_open``: paused between tries, as an operator holds a run open to retry."""
    s = make(task_class("ST_A", 2), stage_class("ST_B", ["ST_A"]))
    s.start({}, 0.0)
    join(s, EP, b"a", "ST_A", capacity=2)
    join(s, EP_B, b"b", "ST_B")
    sent(s)
    for attempt in range(SETTINGS.max_attempts):
        s.on_worker_message(EP, b"a", protocol.Fail(0, "ValueError: bad", ["E"]), attempt * 3.0)
        s.paused = False
        credit(s, EP, b"a", 1, attempt * 3.0 + 3.0)
        s.paused = held_open
    assert [f["item_id"] for f in s.tasks["ST_A"].failed] == ["ST_A/0"]
    return s


def test_a_source_item_re_driven_after_its_stage_finished_reaches_the_stage():
    from zmqpipeline.distributor.control import ControlLogic

    s = _a_source_item_fails_for_good(held_open=True)
    logic = ControlLogic(s, "ipc://control.ipc")
    s.paused = False
    ack(s, "ST_A", [1], 9.0, results={1: {"n": 2}})
    assert data_items(credit(s, EP_B, b"b", 0, 9.0), b"b") == [0]
    s.paused = True
    ack(s, "ST_B", [0], 9.0)
    assert s.tasks["ST_A"].finished and s.tasks["ST_B"].finished and not s.done
    ok, body = logic.handle(protocol.Control(2, "retry_failed", {"ids": ["ST_A/0"]}), 9.0)
    assert ok and body["retried"] == [{"item_id": "ST_A/0", "new_item_id": "ST_A/2"}]
    assert not s.tasks["ST_B"].finished  # what ST_A/2 makes will feed it
    logic.handle(protocol.Control(3, "resume", {}), 9.0)
    assert data_items(credit(s, EP, b"a", 1, 9.0), b"a") == [2]
    ack(s, "ST_A", [2], 9.0, results={2: {"n": 1}})
    assert not s.done
    assert data_items(credit(s, EP_B, b"b", 1, 9.0), b"b") == [1]
    ack(s, "ST_B", [1], 9.0)
    assert s.done and s.ended_by == "completed" and s.tasks["ST_B"].collected == 2


def test_a_result_collected_after_its_item_failed_for_good_counts_and_feeds_the_stage():
    # The distributor failed ST_A/0 for good, but its result reached the collector before
    # the SKIP did (their link was down): the collector handled it and ACKs it, late.
    s = _a_source_item_fails_for_good(held_open=False)
    ack(s, "ST_A", [0], 9.0, by=b"a", results={0: {"n": 1}})  # late: collected after all
    assert s.tasks["ST_A"].failed == [] and s.tasks["ST_A"].collected == 1 and not s.stale_acks
    assert s.worker_log[b"a"]["collected"] == 1  # the worker's count says so too
    ack(s, "ST_A", [1], 9.0, results={1: {"n": 2}})
    assert data_items(credit(s, EP_B, b"b", 0, 9.0), b"b") == [0, 1]
    ack(s, "ST_B", [0, 1], 9.5)
    assert s.done and s.ended_by == "completed" and s.tasks["ST_B"].collected == 2


def test_a_late_result_after_the_stage_finished_reopens_it():
    s = _a_source_item_fails_for_good(held_open=True)
    s.paused = False
    ack(s, "ST_A", [1], 9.0, results={1: {"n": 2}})
    assert data_items(credit(s, EP_B, b"b", 0, 9.0), b"b") == [0]
    s.paused = True
    ack(s, "ST_B", [0], 9.0)
    assert s.tasks["ST_B"].finished and not s.done
    ack(s, "ST_A", [0], 9.5, results={0: {"n": 1}})  # late: collected after all
    assert not s.tasks["ST_B"].finished
    s.paused = False
    assert data_items(credit(s, EP_B, b"b", 1, 9.5), b"b") == [1]
    ack(s, "ST_B", [1], 9.6)
    assert s.done and s.tasks["ST_B"].collected == 2 and s.tasks["ST_A"].failed == []


def test_a_stage_whose_source_ends_with_nothing_derived_finishes():
    s = make(task_class("ST_A", 2), stage_class("ST_B", ["ST_A"], derive=lambda r, i: None))
    s.start({}, 0.0)
    join(s, EP, b"a", "ST_A")
    sent(s)
    ack(s, "ST_A", [0, 1], 0.1, results={0: {}, 1: {}})
    assert s.tasks["ST_B"].finished and s.done


def test_a_result_reaches_the_stage_once_and_duplicates_carry_none():
    s = make(task_class("ST_A", 2), stage_class("ST_B", ["ST_A"]))
    s.start({}, 0.0)
    join(s, EP, b"a", "ST_A")
    sent(s)
    ack(s, "ST_A", [0], 0.1, results={0: {"v": 1}})
    ack(s, "ST_A", [0], 0.1, results={0: {"v": 1}})  # a stale ACK: not in flight any more
    assert s.stages.counts["ST_B"]["received"] == 1 and len(s.stages.backlog["ST_B"]) == 1


def test_a_full_backlog_holds_the_source_back_until_the_stage_takes_items():
    settings = replace(SETTINGS, stage_backlog=2)
    s = make(
        task_class("ST_A", 100),
        stage_class("ST_B", ["ST_A"], derive=lambda r, i: [{}, {}, {}]),
        settings=settings,
    )
    s.start({}, 0.0)
    join(s, EP, b"a", "ST_A", capacity=1)
    assert data_items(sent(s), b"a") == [0]
    ack(s, "ST_A", [0], 0.1, results={0: {}})  # three derived: over the bound of 2
    assert credit(s, EP, b"a", 1, 0.1) == []  # the source hands out nothing new
    join(s, EP_B, b"b", "ST_B", capacity=2)
    out = sent(s, 0.2)
    assert data_items(out, b"b") == [0, 1] and len(s.stages.backlog["ST_B"]) == 1
    assert data_items(credit(s, EP, b"a", 0, 0.2), b"a") == [1]  # room again: it goes on


def test_derive_raising_is_a_reported_failure_and_the_stage_goes_on():
    def picky(result, item_id):
        if result["n"] == 1:
            raise ValueError("cannot parse")
        return {"ok": result["n"]}

    s = make(task_class("ST_A", 2), stage_class("ST_B", ["ST_A"], derive=picky))
    s.start({}, 0.0)
    join(s, EP, b"a", "ST_A")
    sent(s)
    ack(s, "ST_A", [0, 1], 0.1, results={0: {"n": 1}, 1: {"n": 2}})
    failed = s.tasks["ST_B"].failed
    assert [f["item_id"] for f in failed] == ["ST_B/derive(ST_A/0)"]
    assert "ValueError: cannot parse" in failed[0]["error"] and failed[0]["data"] == {"n": 1}
    assert list(s.stages.backlog["ST_B"]) == [{"ok": 2}]
    bad = make(task_class("ST_A", 1), stage_class("ST_B", ["ST_A"], derive=lambda r, i: 3))
    bad.start({}, 0.0)
    join(bad, EP, b"a", "ST_A")
    sent(bad)
    ack(bad, "ST_A", [0], 0.1, results={0: {}})
    assert "must return a dict, a list of dicts or None" in bad.tasks["ST_B"].failed[0]["error"]


def test_cycles_through_sources_and_unknown_sources_are_refused_by_name():
    a = stage_class("ST_A", ["ST_C"], endpoint=EP)
    b = stage_class("ST_B", ["ST_A"])
    c = task_class("ST_C", 1, endpoint=EP_C, deps=["ST_B"])
    with pytest.raises(
        ConfigurationError,
        match=r"cycle among sources and dependencies: ST_A \(source\) -> ST_C -> "
        r"ST_B \(source\) -> ST_A",
    ):
        check_dependencies({"ST_A": a, "ST_B": b, "ST_C": c})
    with pytest.raises(ConfigurationError, match=r"is fed by \(sources\) unregistered.*ST_C"):
        check_dependencies({"ST_B": stage_class("ST_B", ["ST_C"])})


def test_a_stage_class_needs_derive_and_an_open_ended_one_nothing():
    with pytest.raises(TypeError, match=r"does not define derive\(\)"):

        class NoDerive(Task):
            task_type = TaskType("ST_B")
            endpoint = EndpointAddress(EP_B)
            sources = [TaskType("ST_A")]  # noqa: RUF012

    class Fed(Task):  # no handle, no derive: its items are pushed in
        task_type = TaskType("ST_P")
        endpoint = EndpointAddress(EP)
        open_ended = True

    with pytest.raises(TypeError, match="did you mean 'sources'"):

        class Typo(Task):
            sourcse = ["ST_A"]  # noqa: RUF012

    class OneSource(Task):
        sources = TaskType("ST_A")  # one source alone stands for a list of one

        def derive(self, result, item_id):
            return result

    assert Fed.sources == [] and OneSource.sources == ["ST_A"]


def test_the_collector_forwards_results_once_and_skips_quiet_types():
    calls = []

    def collect(tt, seq, result):
        calls.append((tt, seq))
        return None

    logic = CollectorLogic(SETTINGS, collect, DropCounter(logging.getLogger("test"), "test"))
    logic.on_distributor(b"D", protocol.Start(1, {}, ["A", "B"], ["A"], ["A"]), 0.0)
    logic.on_result(protocol.Result(1, "A", b"w", [[0, {"x": 1}], [1, None]]))
    logic.on_result(protocol.Result(1, "A", b"w", [[0, {"x": 1}]]))  # a duplicate
    logic.on_result(protocol.Result(1, "B", b"w", [[0, {"y": 2}]]))
    logic.flush()
    _, frames = logic.outbox[-1]
    entries = acks.entries(protocol.decode(frames).groups)
    assert [(e[0], e[1], e[5]) for e in entries] == [
        ("A", 0, {"x": 1}),
        ("A", 1, {}),
        ("A", 0, None),  # the duplicate: ACKed again, never forwarded again
        ("B", 0, None),  # B feeds nothing: no copy travels back
    ]
    assert calls == [("B", 0)]  # A is quiet: ACKed and forwarded, not handed to the user
    assert logic.collected == 3


def test_push_and_close_open_ended_tasks_with_clear_refusals():
    settings = replace(SETTINGS, stage_backlog=3)
    s = make(open_class("ST_P"), task_class("ST_A", 1, endpoint=EP_B), settings=settings)
    s.start({}, 0.0)
    logic = PushLogic(s)
    push = lambda tt, items: logic.handle(protocol.Push(1, tt, items), 0.1)  # noqa: E731
    ok, error, _ = push("NOPE", [{}])
    assert not ok and error == "no task 'NOPE' in this run (open-ended tasks: ST_P)"
    assert push("ST_A", [{}])[1] == "task ST_A is not open-ended: it takes no pushed items"
    assert push("ST_P", [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]) == (True, "", 3)  # room: 3
    assert push("ST_P", [{"i": 3}]) == (True, "", 0)
    join(s, EP, b"p", "ST_P", capacity=2)
    assert data_items(sent(s), b"p") == [0, 1]
    assert push("ST_P", [{"i": 3}]) == (True, "", 1)
    assert logic.handle(protocol.PushClose(2, "ST_P"), 0.2) == (True, "", 0)
    assert push("ST_P", [{}])[1] == "task ST_P is closed: it takes no more items"
    out = credit(s, EP, b"p", 2, 0.3)
    assert data_items(out, b"p") == [2, 3] and s.tasks["ST_P"].task.is_complete
    ack(s, "ST_P", [0, 1, 2, 3], 0.4)
    assert s.tasks["ST_P"].finished and s.tasks["ST_P"].collected == 4


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


def test_user_code_error_in_the_collector_never_forwards():
    def collect(tt, seq, result):
        raise UserCodeError(ValueError("no"), "ValueError: no")

    logic = CollectorLogic(SETTINGS, collect, DropCounter(logging.getLogger("test"), "test"))
    logic.on_distributor(b"D", protocol.Start(1, {}, ["A"], ["A"], []), 0.0)
    logic.on_result(protocol.Result(1, "A", b"w", [[0, {"x": 1}]]))
    logic.flush()
    entry = acks.entries(protocol.decode(logic.outbox[-1][1]).groups)[0]
    assert entry[3] == "ValueError: no" and entry[5] is None  # retried, then forwarded once


# -- the command line ---------------------------------------------------------------------


def test_list_shows_stages_and_run_reports_each_stage():
    listed = zmqpipeline("list", "examples/stages", cwd=ROOT, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "stage fed by URLS" in listed.stdout and "stage fed by FETCH" in listed.stdout
    run = zmqpipeline("run", "examples/stages", "--quiet", cwd=ROOT, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "FETCH   180 results" in run.stdout and "PARSE   540 results" in run.stdout
    assert "stage fed by URLS: 200 result(s) in, 180 item(s) derived, 20 filtered" in run.stdout


def test_push_to_nothing_and_bad_input_are_clear_errors(tmp_path):
    gone = zmqpipeline("push", f"ipc://{tmp_path}/none.ipc", "PUSHED", '{"i": 1}', cwd=ROOT)
    assert gone.returncode == 1 and "no distributor at" in gone.stderr
    bad = zmqpipeline(
        "push", f"ipc://{tmp_path}/none.ipc", "PUSHED", stdin='{"i": 1}\n[1]\n', cwd=ROOT
    )
    assert bad.returncode == 2 and "line 2: an item must be a JSON object" in bad.stderr


def test_garbage_on_the_push_endpoint_is_dropped_and_a_real_push_still_answered(tmp_path):
    """A stranger on the push socket: random bytes, a kind that does not belong there, a
    many-part message and a msgpack bomb are dropped and counted; nothing crashes, and a
    well-formed push that follows gets its reply."""
    from zmqpipeline.runtime.runtime import serve_requests

    s = make(open_class("ST_P"))
    s.start({}, 0.0)
    logic = PushLogic(s)
    endpoint = f"ipc://{tmp_path}/push.ipc"
    codec = protocol.Codec(1 << 20)
    bomb = b"\xdd" + (10**8).to_bytes(4, "big") + b"\x80" * 1000
    with runtime.RoleRuntime("distributor", SETTINGS, logging.getLogger("t")) as rt:
        sock = rt.open(zmq.ROUTER, endpoint, bind=True, admit="clients")
        stranger = rt.ctx.socket(zmq.DEALER)
        stranger.setsockopt(zmq.LINGER, 0)
        stranger.connect(endpoint)
        for frames in (
            [b"\x00\x01\x02"],
            codec.control(1, "stop", {}),  # an operator's kind, at the push endpoint
            [bytes((protocol.VERSION, protocol.PUSH)), b"", b"", b"", b""],
            [bytes((protocol.VERSION, protocol.PUSH)), bomb],
            codec.push(7, "ST_P", [{"i": 1}]),
        ):
            stranger.send_multipart(frames)
        got_reply = False
        while not got_reply:
            assert sock.poll(5000), "nothing arrived at the push endpoint"
            serve_requests(
                rt, sock, protocol.DISTRIBUTOR_PUSH, "push", lambda m: logic.answer(m, 0.1), 1 << 20
            )
            got_reply = stranger.poll(100) != 0
        reply = protocol.decode(stranger.recv_multipart())
        stranger.close()
        dropped = dict(rt.drops.counts)
    assert reply == protocol.PushReply(7, True, "", 1)
    assert sum(n for reason, n in dropped.items() if reason.startswith("push: ")) == 4, dropped
    assert s.stages.counts["ST_P"]["pushed"] == 1
