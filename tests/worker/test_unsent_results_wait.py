"""A worker held back by its big results not yet written out goes on as soon as they are
out, not when the distributor next speaks (issue 30: 1 MiB results from one worker ran at
a third of their speed in 3 of 11 runs, the worker idle 0.2-0.3 s once a run). Nothing
wakes a worker when ZeroMQ has written a frame out, so it must look. Real processes over
ipc; the distributor's heartbeat is put far beyond the run, so a worker that waits for it
shows."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

import zmqpipeline as zp

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024
N = 48
zp.TaskType.register_type("UNSENT")
#: Every role: heartbeats every 30 s (a worker waiting for one waits that long); a worker
#: may hold 4 MiB of big results not yet out (half of 8 MiB in flight), and one item at a
#: time (so its queue is empty whenever those 4 MiB hold it back).
ENV = {
    "ZMQPIPELINE_HEARTBEAT_INTERVAL_S": "30",
    "ZMQPIPELINE_MAX_IN_FLIGHT_BYTES": str(8 * MiB),
    "ZMQPIPELINE_PREFETCH": "1",
    "ZMQPIPELINE_MAX_PREFETCH": "1",
    "ZMQPIPELINE_INITIAL_WINDOW": "1",
}


def test_a_worker_waiting_for_its_big_results_to_leave_goes_on_once_they_have(
    procs, endpoints, tmp_path
):
    ep, out = endpoints, tmp_path / "report.json"

    class Tiny(zp.Task):
        task_type = zp.TaskType("UNSENT")
        endpoint = zp.EndpointAddress(ep.worker)

        def initialize(self, metadata: Any = None) -> None:
            self.i = 0

        def handle(self, data: Any, address: Any, msgtype: Any) -> dict[str, Any]:
            self.i += 1
            self.is_complete = self.i >= N
            return {}

    class BigBack(zp.SingleThreadedWorker):  # quick items, a megabyte back each
        task_type = zp.TaskType("UNSENT")
        endpoint = zp.EndpointAddress(ep.worker)
        collector_endpoint = zp.EndpointAddress(ep.collector)

        def handle_execution(self, data: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
            return {"blob": b"r" * MiB}

    class Slow(zp.Collector):  # slower than the worker: its results wait to be written out
        endpoint = zp.EndpointAddress(ep.collector)
        ack_endpoint = zp.EndpointAddress(ep.ack)
        seen: ClassVar[int] = 0

        def handle_collection(self, data: Any, task_type: Any, msgtype: Any) -> None:
            assert len(data["blob"]) == MiB
            Slow.seen += 1
            time.sleep(0.01)

    def distribute() -> None:
        started = time.monotonic()
        report = zp.Distributor(ep.collector, ep.ack, tasks=[Tiny]).run()
        took = time.monotonic() - started
        out.write_text(json.dumps({"collected": report.collected, "s": took}))

    def with_env(target: Any) -> Any:
        def run() -> Any:
            os.environ.update(ENV)
            return target()

        return run

    procs.start("collector", with_env(lambda: Slow().run()))
    procs.start("worker", with_env(lambda: BigBack().run()))
    procs.start("distributor", with_env(distribute))
    codes = procs.join(60)
    assert codes["distributor"] == 0, codes
    report = json.loads(Path(out).read_text())
    assert report["collected"] == {"UNSENT": N}
    # 48 results at 10 ms each: about half a second of the collector's. A worker that
    # waited for a heartbeat once would take 30 s more; allow the slowest machine 20 s.
    assert report["s"] < 20, f"the run took {report['s']:.1f} s: the worker waited"
