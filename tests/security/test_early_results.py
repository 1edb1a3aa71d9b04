"""Results pushed to a collector before any distributor exists are held for the run that
may start, but bounded in bytes (32 MiB): once 20 results of 50 MB have been read, the
collector holds none of them (before, it held all 20: over 1 GiB until a run started).
What libzmq queues before the collector reads it is not the collector's to bound (see
docs/security.md); the peak is reported. Real processes over real sockets."""

from __future__ import annotations

import time

import msgpack
import pytest
import zmq
from support.hostile import (
    HwmWatch,
    as_if_fresh,
    counting_collector,
    logging_to,
    read_text,
    vm_rss_mib,
    wait_for_log,
)
from support.pipelines import load, make_task, make_worker, run_distributor

from zmqpipeline import protocol

pytestmark = pytest.mark.timeout(120)

N = 300
MIB = 1024 * 1024


def _early_results(endpoint: str) -> None:
    """20 RESULTs of 50 MB each, for a run that does not exist yet; sent before returning."""
    body = msgpack.packb([7, "FIRST", b"early", [[0, {"blob": b"\0" * (50 * MIB)}]]])
    frames = [bytes((protocol.VERSION, protocol.RESULT)), body]
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(endpoint)
    for _ in range(20):
        push.send_multipart(frames, copy=False)
    push.close(linger=60_000)  # returns once all is sent
    ctx.term()


def test_results_before_any_distributor_are_bounded_in_bytes(procs, endpoints):
    collector = counting_collector(endpoints)
    log = endpoints.results.with_name("collector.log")
    watch = HwmWatch(procs)
    procs.start("collector", logging_to(log, lambda: collector().run()))
    procs.start("attacker", lambda: _early_results(endpoints.collector))
    procs.started["attacker"].join(60)
    assert procs.started["attacker"].exitcode == 0
    # Each is over the 32 MiB the collector holds early: once all are read, none is held.
    pid = procs.started["collector"].pid
    deadline = time.monotonic() + 30

    # Held, they would be 1 000 MiB; what is left is the collector itself and at most one
    # message being read (50 MB), with what the allocator has not handed back yet.
    def held() -> float:
        rss = vm_rss_mib(pid)
        assert rss is not None, "the collector is gone"
        return as_if_fresh(rss, watch.inherited)

    while (rss := held()) > 150 and time.monotonic() < deadline:
        time.sleep(0.1)  # until all 20 are read and let go: there is no event to wait on
    assert rss < 150, f"the collector still holds {rss} MiB (as if started fresh)"
    assert wait_for_log(log, ["result before the run started, buffer full"], 30)
    task = make_task(endpoints.worker, N)
    worker = make_worker(endpoints.worker, endpoints.collector)
    procs.start("worker", lambda: worker().run())
    procs.start("distributor", lambda: run_distributor(endpoints, [task]))
    deadline = time.monotonic() + 60
    for name in ("collector", "distributor", "worker"):
        procs.started[name].join(max(0.1, deadline - time.monotonic()))
        assert procs.started[name].exitcode == 0, name
    watch.stop()  # prints every role's peak
    ids = sorted(item[1]["i"] for item in load(endpoints.results)["items"])
    assert ids == list(range(1, N + 1))
    assert "result before the run started, buffer full" in read_text(log)
