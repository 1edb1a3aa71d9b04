"""Pushed items with journals (issue 28): an item a pusher was told is accepted is
collected once across a distributor SIGKILL and restart, and pushes after the restart
get seqs of their own. Real processes over ipc."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest
from edges_helpers import collector_class, handled, load, run_collector, run_distributor
from edges_helpers import worker_class as echo_worker
from support.procs import FORK

from zmqpipeline import EndpointAddress, Pusher, Task, TaskType
from zmqpipeline.runtime import runtime


def pushed_task(ep: SimpleNamespace) -> type[Task]:
    class Pushed(Task):
        open_ended = True

    Pushed.task_type, Pushed.endpoint = TaskType("EJ_PUSHED"), EndpointAddress(ep.worker)
    return Pushed


def _distributor_announcing(ep, tasks, journal, bound) -> None:
    """A distributor that sets ``bound`` once its push endpoint is bound."""
    real = runtime.RoleRuntime.open

    def open_and_announce(self, socket_type, endpoint, **kwargs):
        sock = real(self, socket_type, endpoint, **kwargs)
        if endpoint == ep.push:
            bound.set()
        return sock

    runtime.RoleRuntime.open = open_and_announce  # type: ignore[method-assign]
    run_distributor(ep, tasks, journal, push_endpoint=ep.push)


@pytest.mark.timeout(90)
def test_pushed_items_accepted_before_a_distributor_kill_are_collected_once(
    procs, endpoints, tmp_path
):
    ep = endpoints
    ep.push = f"ipc://{tmp_path}/push.ipc"
    journals = tmp_path / "journals"
    dist_journal, coll_journal = journals / "distributor.sqlite", journals / "collector.sqlite"
    log = tmp_path / "handled.log"
    tasks = [pushed_task(ep)]
    worker = echo_worker(ep.worker, ep.collector, "EJ_PUSHED")
    procs.start("collector", lambda: run_collector(collector_class(ep, log), coll_journal))
    procs.start("worker", lambda: worker().run())
    first_bound, second_bound = FORK.Event(), FORK.Event()
    procs.start("doomed", lambda: _distributor_announcing(ep, tasks, dist_journal, first_bound))
    assert first_bound.wait(30)
    before = 3000
    slow = [{"i": i, "delay": 0.002} for i in range(1, before + 1)]  # a backlog builds up
    assert Pusher(ep.push).push_many("EJ_PUSHED", slow) == before
    procs.kill("doomed", signal.SIGKILL)
    procs.started["doomed"].join(10)
    collected_at_kill = len(handled(log))
    assert collected_at_kill < before  # items were waiting in the backlog at the kill
    procs.start(
        "distributor", lambda: _distributor_announcing(ep, tasks, dist_journal, second_bound)
    )
    assert second_bound.wait(30)
    after = [{"i": i} for i in range(before + 1, before + 101)]
    pusher = Pusher(ep.push)
    assert pusher.push_many("EJ_PUSHED", after) == len(after)
    pusher.close("EJ_PUSHED")
    codes = procs.join(60)
    assert codes == {"collector": 0, "worker": 0, "doomed": -9, "distributor": 0}, codes
    ids = handled(log)
    twice = sorted(key for key, count in ids.items() if count > 1)
    assert not twice, twice[:10]
    got = sorted(i for _, i in ids)
    missing = sorted(set(range(1, before + 101)) - set(got))
    assert got == list(range(1, before + 101)), f"{len(missing)} lost, e.g. {missing[:10]}"
    report = load(ep.report)
    assert report["collected"] == {"EJ_PUSHED": before + 100}, report["collected"]
    assert report["failed"] == [] and report["tasks"]["EJ_PUSHED"]["in_flight"] == 0
    print(f"{collected_at_kill} collected at the kill, {before - collected_at_kill} waiting")
