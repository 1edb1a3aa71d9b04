"""Open-ended tasks fed from outside (issue 16): the push logic driven directly, and
``zmqpipeline push`` with nothing to push to or bad input."""

from __future__ import annotations

from dataclasses import replace

from support.cli import zmqpipeline
from support.paths import ROOT
from support.scheduling import EP, EP_B, SETTINGS, ack, data_items, make, sent, task_class
from support.stages import credit, join, open_class

from zmqpipeline import protocol
from zmqpipeline.distributor.push import PushLogic


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


def test_push_to_nothing_and_bad_input_are_clear_errors(tmp_path):
    gone = zmqpipeline("push", f"ipc://{tmp_path}/none.ipc", "PUSHED", '{"i": 1}', cwd=ROOT)
    assert gone.returncode == 1 and "no distributor at" in gone.stderr
    bad = zmqpipeline(
        "push", f"ipc://{tmp_path}/none.ipc", "PUSHED", stdin='{"i": 1}\n[1]\n', cwd=ROOT
    )
    assert bad.returncode == 2 and "line 2: an item must be a JSON object" in bad.stderr
