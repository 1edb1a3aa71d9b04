"""Streaming stages (issue 16): the bookkeeping driven directly with a hand-held clock."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from support import acks
from support.scheduling import EP, EP_B, SETTINGS, ack, data_items, make, sent, task_class
from support.stages import EP_C, credit, join, stage_class

from zmqpipeline import (
    ConfigurationError,
    EndpointAddress,
    Task,
    TaskType,
    protocol,
)
from zmqpipeline.collector import CollectorLogic
from zmqpipeline.distributor.state import check_dependencies
from zmqpipeline.runtime.runtime import UserCodeError
from zmqpipeline.runtime.transport import DropCounter

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
    assert start[3:5] == [["ST_A"], []]  # ST_A's results ride on its ACKs
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


def test_user_code_error_in_the_collector_never_forwards():
    def collect(tt, seq, result):
        raise UserCodeError(ValueError("no"), "ValueError: no")

    logic = CollectorLogic(SETTINGS, collect, DropCounter(logging.getLogger("test"), "test"))
    logic.on_distributor(b"D", protocol.Start(1, {}, ["A"], ["A"], []), 0.0)
    logic.on_result(protocol.Result(1, "A", b"w", [[0, {"x": 1}]]))
    logic.flush()
    entry = acks.entries(protocol.decode(logic.outbox[-1][1]).groups)[0]
    assert entry[3] == "ValueError: no" and entry[5] is None  # retried, then forwarded once
