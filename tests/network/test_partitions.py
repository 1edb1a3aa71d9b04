"""Cut links between hosts mid-run (network namespaces, tests/support/netbed.py): every role on its
own host over tcp. Whatever link is cut, for 5 s or for longer than the run, every id is
collected exactly once, the run ends, and every process exits by itself."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time

import pytest
from support.netbed import netbed  # noqa: F401  (the fixture)
from support.paths import TESTS as HERE
from support.pipelines import load

pytestmark = pytest.mark.timeout(120)


N, DELAY = 1200, 0.01  # 1200 items of 10 ms on two workers: about 6 s of work


ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
    "ZMQPIPELINE_HEARTBEAT_INTERVAL_S": "0.2",
    "ZMQPIPELINE_LIVENESS_MISSES": "5",
    "ZMQPIPELINE_ITEM_TIMEOUT_FLOOR_S": "2",
}


def start(bed, tmp_path, env=None):
    """Hosts: 0 distributor, 1 collector, 2 and 3 workers (``env``: more variables for
    every role). Returns (hosts, processes)."""
    d, c, w1, w2 = bed.hosts
    config = {
        "worker": f"tcp://{d.addr}:5601",
        "collector": f"tcp://{c.addr}:5602",
        "ack": f"tcp://{c.addr}:5603",
        "n": N,
        "delay": DELAY,
        "results": str(tmp_path / "results.json"),
        "report": str(tmp_path / "report.json"),
        "progress_at": 150,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))

    def role(host, name, **kw):
        argv = [sys.executable, str(HERE / "support" / "netroles.py"), name, str(path)]
        return host.popen(argv, env={**ENV, **(env or {})}, **kw)

    procs = {"collector": role(c, "collector", stdout=subprocess.PIPE, text=True)}
    procs["w1"] = role(w1, "worker")
    procs["w2"] = role(w2, "worker")
    procs["distributor"] = role(d, "distributor")
    return (d, c, w1, w2), procs


def wait_for_progress(collector, timeout=60.0):
    """Block until the collector prints PROGRESS (it has collected a share of the run)."""
    with selectors.DefaultSelector() as sel:
        sel.register(collector.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(deadline - time.monotonic()):
                line = collector.stdout.readline()
                if line.strip() == "PROGRESS":
                    return
                if not line:
                    break
    raise AssertionError("the collector never reached its progress mark")


def finish(procs, tmp_path, timeout=60.0):
    """Wait for every role to end by itself. A worker that was cut off when the run ended
    never heard END: like any worker without a distributor it waits for the next one,
    and a SIGTERM ends it cleanly."""
    deadline = time.monotonic() + timeout
    codes = {}
    for name in ("distributor", "collector", "w1", "w2"):
        process = procs[name]
        wait = deadline - time.monotonic()
        if name.startswith("w") and codes["distributor"] == 0:
            wait = min(wait, 5.0)  # END reached it by now, unless it was cut off then
        try:
            codes[name] = process.wait(max(0.1, wait))
        except subprocess.TimeoutExpired:
            if codes["distributor"] != 0:
                codes[name] = None
                continue
            process.terminate()
            codes[name] = process.wait(10)
    assert codes == dict.fromkeys(procs, 0), codes
    results = load(tmp_path / "results.json")
    ids = sorted(item[1]["i"] for item in results["items"])
    assert ids == list(range(1, N + 1)), "ids lost or collected twice"
    return results, load(tmp_path / "report.json")


CUTS = {
    "worker-collector": lambda d, c, w1, w2: (w1, c),
    "worker-distributor": lambda d, c, w1, w2: (w1, d),
    "distributor-collector": lambda d, c, w1, w2: (d, c),
}


@pytest.mark.parametrize("link", sorted(CUTS))
def test_a_link_cut_for_five_seconds_loses_nothing(netbed, tmp_path, link):  # noqa: F811
    bed = netbed(4)
    hosts, procs = start(bed, tmp_path)
    wait_for_progress(procs["collector"])
    a, b = CUTS[link](*hosts)
    bed.partition(a, b)
    time.sleep(5.0)  # the length of the cut is what is tested, not a wait for an event
    bed.heal(a, b)
    finish(procs, tmp_path)


#: The cut-for-good case: the time limit pinned (factor 1: max(floor, p99), and the p99
#: of 10 ms items is far under the 2 s floor), the liveness timeout as ENV sets it.
ITEM_LIMIT_S = float(ENV["ZMQPIPELINE_ITEM_TIMEOUT_FLOOR_S"])
LIVENESS_S = float(ENV["ZMQPIPELINE_HEARTBEAT_INTERVAL_S"]) * int(
    ENV["ZMQPIPELINE_LIVENESS_MISSES"]
)
#: The work left at the cut, done by the one worker still linked: at most the items not yet
#: collected when the collector printed PROGRESS, one DELAY each.
WORK_LEFT_S = (N - 150) * DELAY
#: Per-item overhead of the worker left (about 1 ms on this bed's 2 cores) and the END
#: exchange: 2.5 s. Two time limits (the old bug: a re-issued item back to the cut-off
#: worker) would not be hidden by it for long, and the report check below sees even one.
SLACK_S = 2.5


@pytest.mark.parametrize("attempt", range(5))
def test_a_worker_cut_off_from_the_collector_for_good_does_not_stall_the_run(
    netbed,  # noqa: F811
    tmp_path,
    attempt,
):
    bed = netbed(4)
    hosts, procs = start(bed, tmp_path, env={"ZMQPIPELINE_ITEM_TIMEOUT_FACTOR": "1"})
    _, c, w1, _ = hosts
    wait_for_progress(procs["collector"])
    bed.partition(w1, c)  # healed only by the bed's teardown, after the run
    started = time.monotonic()
    bound = WORK_LEFT_S + ITEM_LIMIT_S + LIVENESS_S + SLACK_S
    assert procs["distributor"].wait(bound + 20) == 0
    took = time.monotonic() - started
    _, report = finish(procs, tmp_path, timeout=30.0)
    assert took < bound, f"run {attempt}: {took:.1f} s after the cut, over {bound:.1f} s"
    workers = {w["pid"]: w for w in report["workers"]}
    cut, healthy = workers[procs["w1"].pid], workers[procs["w2"].pid]
    lost = cut["handed_out"] - cut["collected"]
    assert lost > 0 and report["retries"] > 0  # w1's items went round again
    # Each item lost at w1 went out again once, to w2, which delivered all it got: an item
    # handed back to w1 would have been lost there twice and retried twice.
    assert healthy["handed_out"] == healthy["collected"], healthy
    assert report["retries"] == lost, (report["retries"], cut, healthy)
