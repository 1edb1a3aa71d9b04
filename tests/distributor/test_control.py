"""Operating a run (issue 15): the command logic driven directly with a hand-held clock."""

from __future__ import annotations

import json

import pytest
from support.scheduling import EP, SETTINGS, ack, data_items, make, sent, task_class

from zmqpipeline import protocol
from zmqpipeline.distributor.control import ControlLogic, run_state

pytestmark = pytest.mark.timeout(60)


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
