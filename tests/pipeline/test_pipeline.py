"""End to end: real distributor, collector and worker processes over ipc and tcp."""

from __future__ import annotations

import multiprocessing.connection
import signal
import time
from collections import Counter

import pytest
from support.pipelines import (
    all_exit_zero,
    check_exactly_once,
    load,
    make_collector,
    make_task,
    make_worker,
    run_distributor,
)
from support.procs import FORK
from support.service_helpers import announcing_stop_signal

import zmqpipeline.runtime.runtime as runtime_module
from zmqpipeline import MetaDataWorker

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("n_workers", [1, 2])
def test_every_item_collected_once(procs, endpoints, transport, n_workers):
    task = make_task(endpoints.worker, 300)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints)
    procs.start("collector", lambda: collector().run())
    for k in range(n_workers):
        procs.start(f"worker{k}", lambda: worker().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    all_exit_zero(procs)
    results, report = load(endpoints.results), load(endpoints.report)
    check_exactly_once(results, 300)
    assert report["collected"] == {"FIRST": 300} and report["failed"] == []
    assert results["finished"]["collected"] == {"FIRST": 300}
    assert all(item[2] == "SUCCESS" for item in results["items"])
    assert all(item[1]["msgtype"] == "DATA" for item in results["items"])
    assert 1 <= len(report["per_worker"]) <= n_workers  # sharing: see the next test
    # handed out may count an item twice (a busy worker hands unstarted ones back at the
    # tail); collected counts each once, to the worker that executed it
    assert sum(w["collected"] for w in report["workers"]) == 300


def test_two_workers_share_the_load(procs, endpoints):
    task = make_task(endpoints.worker, 200, delay=0.01)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints)
    procs.start("collector", lambda: collector().run())
    procs.start("worker0", lambda: worker().run())
    procs.start("worker1", lambda: worker().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    all_exit_zero(procs)
    pids = [item[1]["pid"] for item in load(endpoints.results)["items"]]
    assert len(set(pids)) == 2, "both workers got work"
    # From the moment both are working (one may start later on a loaded machine), credit
    # keeps them level: neither does less than a third of the rest.
    both = max(pids.index(pid) for pid in set(pids))
    rest = Counter(pids[both:])
    assert min(rest.values()) >= len(pids[both:]) / 3, rest


def test_dependency_is_collected_before_dependent_starts(procs, endpoints, transport):
    first = make_task(endpoints.worker, 60, "FIRST", delay=0.002)
    second = make_task(endpoints.worker2, 60, "SECOND", dependencies=["FIRST"])
    collector = make_collector(endpoints)
    procs.start("collector", lambda: collector().run())
    w1 = make_worker(endpoints.worker, endpoints.collector, "FIRST")
    w2 = make_worker(endpoints.worker2, endpoints.collector, "SECOND")
    procs.start("second-worker", lambda: w2().run())  # waiting before FIRST is done
    procs.start("first-worker", lambda: w1().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [first, second]))
    all_exit_zero(procs)
    results = load(endpoints.results)
    order = [item[0] for item in results["items"]]
    assert order == ["FIRST"] * 60 + ["SECOND"] * 60
    check_exactly_once(results, 60, "FIRST")
    check_exactly_once(results, 60, "SECOND")
    assert results["task_type"] == "SECOND"


def test_metadata_reaches_tasks_workers_and_collector(procs, endpoints, transport):
    class Meta(MetaDataWorker):
        endpoint = endpoints.meta

        def get_metadata(self):
            return {"v": "meta-value"}

    task = make_task(endpoints.worker, 5)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints)
    procs.start("worker", lambda: worker().run())
    procs.start("collector", lambda: collector().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task], metadata=True))
    procs.start("metadata", lambda: Meta().run())
    all_exit_zero(procs)
    results = load(endpoints.results)
    assert results["metadata"] == {"v": "meta-value"}
    for _, data, _, collector_meta in results["items"]:
        assert data["task_metadata"] == "meta-value"  # Task.initialize
        assert data["handle_data"] == "meta-value"  # handle()'s data
        assert data["worker_metadata"] == "meta-value"  # worker.metadata
        assert data["initialized"] == "meta-value"  # set by init_worker
        assert collector_meta == "meta-value"  # collector.metadata


ORDERS = [
    ("collector", "worker", "distributor"),
    ("worker", "distributor", "collector"),
    ("distributor", "worker", "collector"),
    ("distributor", "collector", "worker"),
    ("worker", "collector", "distributor"),
]


def _announcing_up(target, up):
    """``target`` run with ``up`` set once its role has opened its first socket."""

    def run() -> None:
        real = runtime_module.RoleRuntime.open

        def open_and_announce(self, *args, **kwargs):
            sock = real(self, *args, **kwargs)
            up.set()
            return sock

        runtime_module.RoleRuntime.open = open_and_announce  # type: ignore[method-assign]
        target()

    return run


@pytest.mark.parametrize("order", ORDERS, ids="-".join)
def test_any_start_order_completes(procs, endpoints, transport, order):
    task = make_task(endpoints.worker, 50)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints)
    targets = {
        "collector": lambda: collector().run(),
        "worker": lambda: worker().run(),
        "distributor": lambda: run_distributor(endpoints, [task]),
    }
    for name in order:  # each role is up (its first socket open) before the next starts
        up = FORK.Event()
        procs.start(name, _announcing_up(targets[name], up))
        assert up.wait(10), f"{name} never opened a socket"
    all_exit_zero(procs)
    check_exactly_once(load(endpoints.results), 50)


def test_ack_data_reaches_the_task_and_can_hold_items_back(procs, endpoints):
    task = make_task(endpoints.worker, 30, hold_until_acked=True)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints, ack_data=True)
    procs.start("collector", lambda: collector().run())
    procs.start("worker0", lambda: worker().run())
    procs.start("worker1", lambda: worker().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    all_exit_zero(procs)
    collected = [item[1]["i"] for item in load(endpoints.results)["items"]]
    # held back until each ACK returned, so even two workers deliver strictly in order
    assert collected == list(range(1, 31))


def test_late_worker_gets_work(procs, endpoints):
    import multiprocessing

    halfway = multiprocessing.get_context("fork").Event()
    task = make_task(endpoints.worker, 200, delay=0.01)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints, progress=halfway, progress_after=20)
    procs.start("collector", lambda: collector().run())
    procs.start("early", lambda: worker().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    assert halfway.wait(30)
    procs.start("late", lambda: worker().run())
    all_exit_zero(procs)
    shares = load(endpoints.report)["per_worker"]
    assert len(shares) == 2 and min(shares.values()) > 0, shares
    check_exactly_once(load(endpoints.results), 200)


def test_every_role_exits_within_two_seconds_of_the_end(procs, endpoints):
    task = make_task(endpoints.worker, 20)
    worker = make_worker(endpoints.worker, endpoints.collector, threads=4)
    collector = make_collector(endpoints)
    procs.start("collector", lambda: collector().run())
    procs.start("worker", lambda: worker().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    # When did each process end? Wait on their sentinels (an event per exit), not a clock.
    exited: dict[str, float] = {}
    pending = {p.sentinel: name for name, p in procs.started.items()}
    while pending:
        ready = multiprocessing.connection.wait(list(pending), timeout=30)
        assert ready, f"still running after 30 s: {sorted(pending.values())}"
        for sentinel in ready:
            exited[pending.pop(sentinel)] = time.monotonic()
    all_exit_zero(procs)
    lag = {name: at - exited["distributor"] for name, at in exited.items()}
    assert max(lag.values()) < 2.0, lag


def test_sigterm_to_the_distributor_ends_the_run_cleanly(procs, endpoints):
    import multiprocessing

    started = multiprocessing.get_context("fork").Event()
    task = make_task(endpoints.worker, 10_000, delay=0.01)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints, progress=started, progress_after=5)
    procs.start("collector", lambda: collector().run())
    procs.start("worker", lambda: worker().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    assert started.wait(30)
    procs.kill("distributor", signal.SIGTERM)
    all_exit_zero(procs, timeout=10)
    results, report = load(endpoints.results), load(endpoints.report)
    assert report["aborted"] is True and results["finished"]["aborted"] is True
    assert 5 <= len(results["items"]) < 10_000


@pytest.mark.parametrize("role", ["worker", "collector"])
def test_sigint_stops_a_waiting_role(procs, endpoints, role):
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = make_collector(endpoints)
    handlers_installed = FORK.Event()

    def target() -> None:
        # The role installs its SIGINT handler when it makes its StopSignal: say when.
        announcing_stop_signal(handlers_installed)
        (worker if role == "worker" else collector)().run()

    process = procs.start(role, target)
    assert handlers_installed.wait(10), f"the {role} never made its StopSignal"
    procs.kill(role, signal.SIGINT)
    process.join(5)
    assert process.exitcode == 0
