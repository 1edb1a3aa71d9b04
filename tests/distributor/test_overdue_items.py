"""An item over its time limit (its worker cut off from the collector, say) goes to a worker
that has proven it delivers, never back to the one it came from while such a worker is
there: a link cut for good costs one time limit, not two or MAX_DEATHS of them."""

from __future__ import annotations

from support import acks
from support.scheduling import EP, data_items, make, sent, task_class

from zmqpipeline import protocol


def _cut_off_and_healthy():
    """S_A of 10 items, 1 s limit: ``cut`` holds item 0 past it; ``good`` has delivered
    two and asked for no more; ``cut`` has credit again."""
    limited = task_class("S_A", 10)
    limited.item_time_limit_s = 1.0
    s = make(limited)
    s.start({}, 0.0)
    s.on_worker_message(EP, b"cut", protocol.Ready("S_A", 1, 1, 1), 0.0)
    assert data_items(sent(s), b"cut") == [0]
    s.on_worker_message(EP, b"good", protocol.Ready("S_A", 1, 1, 1), 0.0)
    for seq in (1, 2):  # good delivers, one at a time
        assert data_items(sent(s), b"good") == [seq]
        s.on_ack(acks.plain("S_A", [seq], by=b"good"), 0.1 * seq)
        if seq == 1:
            s.on_worker_message(EP, b"good", protocol.Credit(1), 0.1 * seq)
            s.dispatch(0.1 * seq)
    for now in (0.5, 1.0, 1.5):  # both keep beating; cut never delivers item 0
        s.on_worker_message(EP, b"hb", protocol.Heartbeat(b"cut"), now)
        s.on_worker_message(EP, b"hb", protocol.Heartbeat(b"good"), now)
    s.tick(1.5)
    s.on_worker_message(EP, b"cut", protocol.Credit(1), 1.5)  # it says it has room
    s.dispatch(1.5)
    return s


def test_an_overdue_item_does_not_go_back_to_the_worker_it_came_from():
    s = _cut_off_and_healthy()
    out = sent(s, 1.5)
    assert 0 not in data_items(out, b"cut"), "the overdue item went back to the cut-off worker"
    assert 0 in s.tasks["S_A"].in_flight


def test_an_overdue_item_waits_for_the_worker_that_delivers():
    s = _cut_off_and_healthy()
    sent(s, 1.5)
    s.on_worker_message(EP, b"good", protocol.Credit(1), 1.6)
    s.dispatch(1.6)
    assert data_items(sent(s, 1.6), b"good") == [0]
    assert s.tasks["S_A"].in_flight[0].deaths == 1
