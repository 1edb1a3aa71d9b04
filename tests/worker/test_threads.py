"""The multi-threaded worker's thread pool, end to end: real processes over ipc and tcp."""

from __future__ import annotations

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

pytestmark = pytest.mark.timeout(60)


def test_multithreaded_worker_with_ten_threads(procs, endpoints, transport):
    task = make_task(endpoints.worker, 200, delay=0.005)
    worker = make_worker(endpoints.worker, endpoints.collector, threads=10)
    collector = make_collector(endpoints)
    procs.start("collector", lambda: collector().run())
    procs.start("worker", lambda: worker().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    all_exit_zero(procs)
    results = load(endpoints.results)
    check_exactly_once(results, 200)
    threads_used = {item[1]["thread"] for item in results["items"]}
    assert len(threads_used) > 1 and threads_used <= set(range(10))
    assert all(item[1]["main"] for item in results["items"]), "handle_execution ran first"
