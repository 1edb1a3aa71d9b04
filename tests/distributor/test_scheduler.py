"""The distributor's decisions, driven directly: no sockets, a hand-held clock."""

from __future__ import annotations

import pytest
from support.scheduling import EP, EP_B, SETTINGS, ack, data_items, make, sent, task_class

from zmqpipeline import ConfigurationError, protocol
from zmqpipeline.distributor.scheduler import COLLECTOR, Scheduler, check_dependencies
from zmqpipeline.runtime.seen import SeenSet


def test_start_tells_the_collector_and_welcomes_waiting_workers():
    s = make(task_class("S_A", 3))
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 2, 2, 1), 0.0)
    assert sent(s) == []  # nothing before the run starts (metadata may be pending)
    s.start({"m": "x"}, 0.0)
    out = sent(s)
    assert out[0] == (
        COLLECTOR,
        None,
        protocol.START,
        [42, {"m": "x"}, ["S_A"], [], [], s.tokens.key],
    )
    assert out[1] == (EP, b"w1", protocol.WELCOME, [42, {"m": "x"}, {}])
    assert data_items(out) == [0, 1]  # credit 2: two items in one message
    assert len([m for m in out if m[2] == protocol.DATA]) == 1


def test_nothing_is_handed_out_before_a_collector_is_up():
    s = Scheduler([task_class("S_A", 3)()], SETTINGS, run=42)
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 2, 2, 1), 0.0)
    s.dispatch(0.0)
    assert data_items(sent(s)) == []
    s.on_collector_hello(b"collector", 0.1)
    s.dispatch(0.1)
    out = sent(s)
    assert (
        COLLECTOR,
        None,
        protocol.START,
        [42, {}, ["S_A"], [], [], s.tokens.key],
    ) in out  # START again
    assert data_items(out) == [0, 1]


def test_task_finishes_only_when_every_item_is_acked():
    s = make(task_class("S_A", 3))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 5, 5, 1), 0.0)
    s.dispatch(0.0)
    assert data_items(sent(s)) == [0, 1, 2]
    ack(s, "S_A", [0, 2], 1.0)
    assert not s.done
    ack(s, "S_A", [1], 1.0)
    assert s.done
    out = sent(s)
    ends = [(ch, ident) for ch, ident, kind, _ in out if kind == protocol.END]
    # the collector first: its handle_finished ends the user's run (workers leaving at
    # once would hold it up)
    assert ends == [(COLLECTOR, None), (EP, b"w1")]
    summary = next(body for _, _, kind, body in out if kind == protocol.END)[1]
    assert summary["collected"] == {"S_A": 3} and summary["failed"] == []


def test_dependent_task_waits_for_collection_not_dispatch():
    s = make(task_class("S_A", 2), task_class("S_B", 1, EP_B, deps=["S_A"]))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"a", protocol.Ready("S_A", 4, 4, 1), 0.0)
    s.on_worker_message(EP_B, b"b", protocol.Ready("S_B", 4, 4, 1), 0.0)
    s.dispatch(0.0)
    out = sent(s)
    assert data_items(out, b"a") == [0, 1]
    assert not any(ident == b"b" for _, ident, _, _ in out)  # not even WELCOME
    ack(s, "S_A", [0], 0.1)
    s.dispatch(0.1)
    assert not any(ident == b"b" for _, ident, _, _ in sent(s))
    ack(s, "S_A", [1], 0.2)  # the last FIRST item collected: SECOND may begin
    s.dispatch(0.2)
    out = sent(s)
    assert (EP_B, b"b", protocol.WELCOME, [42, {}, {}]) in out
    assert data_items(out, b"b") == [0]


def test_cycles_and_unknown_dependencies_are_named():
    a = task_class("S_A", 1, deps=["S_C"])
    b = task_class("S_B", 1, deps=["S_A"])
    c = task_class("S_C", 1, deps=["S_B"])
    with pytest.raises(ConfigurationError, match="dependency cycle: S_A -> S_C -> S_B -> S_A"):
        check_dependencies({"S_A": a, "S_B": b, "S_C": c})
    with pytest.raises(ConfigurationError, match=r"unregistered task type.*S_C"):
        check_dependencies({"S_A": a})
    selfish = task_class("S_A", 1, deps=["S_A"])
    with pytest.raises(ConfigurationError, match="S_A -> S_A"):
        check_dependencies({"S_A": selfish})


def test_is_available_for_handling_holds_items_until_an_ack():
    s = make(task_class("S_A", 3, hold=True))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 3, 3, 1), 0.0)
    s.dispatch(0.0)
    assert data_items(sent(s)) == [0]
    s.dispatch(0.1)
    assert data_items(sent(s)) == []
    ack(s, "S_A", [0], 0.2)
    s.dispatch(0.2)
    assert data_items(sent(s)) == [1]


def test_handle_that_raises_is_a_reported_failure_and_stops_the_task():
    s = make(task_class("S_A", 5, raises=True))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 1, 1, 1), 0.0)
    sent(s)
    assert s.done  # nothing was handed out, nothing is in flight: the run is over
    (failure,) = s.summary(False)["failed"]
    assert failure["seq"] is None and failure["item_id"] == "S_A/handle#1"
    assert "handle broke" in failure["error"]


def test_a_task_may_go_on_after_handle_raised():
    class Flaky(task_class("S_A", 3)):
        continue_after_error = True

        def handle(self, data, address, msgtype):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 2:
                raise RuntimeError("second call broke")
            return super().handle(data, address, msgtype)

    s = make(Flaky)
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 5, 5, 1), 0.0)
    assert data_items(sent(s)) == [0]  # the raise ends this dispatch
    s.dispatch(0.1)
    assert data_items(sent(s, 0.1)) == [1, 2]
    ack(s, "S_A", [0, 1, 2], 0.2)
    assert s.done and s.summary(False)["failed"][0]["item_id"] == "S_A/handle#2"


def test_unknown_worker_is_told_to_reset():
    s = make(task_class("S_A", 1))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"ghost", protocol.Credit(1), 0.0)
    assert sent(s)[-1] == (EP, b"ghost", protocol.RESET, [])


def test_worker_for_a_type_not_served_here_is_ignored():
    s = make(task_class("S_A", 1))
    s.start({}, 0.0)
    sent(s)
    s.on_worker_message(EP, b"w", protocol.Ready("S_B", 1, 1, 1), 0.0)
    s.on_worker_message(EP_B, b"w", protocol.Ready("S_A", 1, 1, 1), 0.0)
    assert sent(s) == [] and not s.workers


def test_seen_set_keeps_only_out_of_order_ids():
    seen = SeenSet()
    for seq in [0, 1, 3, 4, 2]:
        assert seq not in seen
        seen.add(seq)
    assert seen.low == 5 and seen.above == set()
    seen.add(7)
    assert 7 in seen and 6 not in seen and 4 in seen and seen.above == {7}
    for seq in range(100_000):
        seen.add(seq)
    assert seen.low == 100_000 and seen.above == set()


def test_item_msgpack_cannot_carry_fails_at_once_naming_type_and_key():
    class Unpackable(task_class("S_A", 3)):
        def handle(self, data, address, msgtype):
            item = super().handle(data, address, msgtype)
            if item["n"] == 2:
                item["bad"] = {1, 2}  # a set: msgpack cannot carry it
            return item

    s = make(Unpackable)
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 3, 3, 1), 0.0)
    s.dispatch(0.0)
    out = sent(s)
    assert data_items(out, b"w1") == [0, 2]  # the others still go
    assert (COLLECTOR, None, protocol.SKIP, [42, "S_A", 1]) in out
    (failure,) = s.summary(False)["failed"]
    assert failure["seq"] == 1 and failure["attempts"] == 0  # retrying would not help
    assert "task type 'S_A'" in failure["error"] and "['bad']" in failure["error"]
    ack(s, "S_A", [0, 2], 0.1)
    assert s.done


def test_every_worker_told_the_end_is_known_so_a_run_of_known_workers_needs_no_grace():
    """``told_end`` counts the workers sent END: at the end, and each that joins after it
    (``zmqpipeline run`` ends once all the workers it started are in it)."""
    s = make(task_class("S_A", 2))
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 2, 2, 1), 0.0)
    sent(s)
    ack(s, "S_A", [0, 1], 0.1)
    assert s.done and s.told_end == {b"w1"}
    ends = [wid for _, wid, kind, _ in sent(s) if kind == protocol.END]
    assert ends == [None, b"w1"]  # the collector first, then the worker
    s.on_worker_message(EP, b"w2", protocol.Ready("S_A", 2, 2, 1), 0.2)  # late
    assert s.told_end == {b"w1", b"w2"}
    assert [wid for _, wid, kind, _ in sent(s) if kind == protocol.END] == [b"w2"]


def test_an_is_available_for_handling_that_raises_is_a_reported_failure_of_the_task():
    class Raising(task_class("S_A", 5)):
        def is_available_for_handling(self, last_ack_data):
            if self.count == 2:
                raise RuntimeError("not today")
            return True

    s = make(Raising)
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 5, 5, 1), 0.0)
    s.dispatch(0.0)
    assert data_items(sent(s)) == [0, 1]  # then it raised: nothing more goes out
    state = s.tasks["S_A"]
    assert [f["item_id"] for f in state.failed] == ["S_A/is_available_for_handling#3"]
    assert "RuntimeError: not today" in state.failed[0]["error"]


def test_an_is_available_for_handling_set_on_the_task_itself_is_asked():
    s = make(task_class("S_A", 3))
    task = s.tasks["S_A"].task
    task.is_available_for_handling = lambda last_ack_data: task.count == 0
    s.start({}, 0.0)
    s.on_worker_message(EP, b"w1", protocol.Ready("S_A", 3, 3, 1), 0.0)
    s.dispatch(0.0)
    assert data_items(sent(s)) == [0]  # then it says no: held back
    assert s.tasks["S_A"].failed == [] and s.tasks["S_A"].held_back
