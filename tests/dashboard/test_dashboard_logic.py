"""The parts of the dashboard that need no browser: what the status adds for it (lost
workers, latency), driven with a hand-held clock; the poller's one read a second with
ten event streams open, the command endpoint's guards, and ``run --dashboard``, against
real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from dashboard_support import board_fixture, ep_fixture  # noqa: F401  (fixtures: board, ep)
from support.control import wait_for
from support.pipelines import make_task
from support.scheduling import EP, make, sent, task_class

from zmqpipeline import Control, Distributor, protocol
from zmqpipeline.distributor.control import ControlLogic
from zmqpipeline.distributor.latency import LATENCY_BUCKETS_S, LatencyHistogram, percentiles_ms

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_declared_dead_is_listed_lost_with_the_reason():
    s = make(task_class("S_A", 10))
    s.start({}, 0.0)
    for wid in (b"h:1:a", b"h:2:b"):
        s.on_worker_message(EP, wid, protocol.Ready("S_A", 1, 1, 1), 0.0)
        s.on_worker_message(EP, wid, protocol.Credit(0), 0.0)
    sent(s)
    logic = ControlLogic(s, "ipc://control.ipc")
    for now in (0.0, 1.0, 2.0, 3.0, 3.5):  # a tick a heartbeat: h:2 is heard, h:1 is not
        s.on_worker_message(EP, b"h:2:b", protocol.Credit(0), now)
        s.tick(now)
    workers = {w["id"]: w for w in logic.status(3.5)["workers"]}
    assert workers["h:1:a"]["lost"] == "worker died" and workers["h:1:a"]["pid"] == 1
    assert workers["h:1:a"]["heartbeat_age_s"] is None and workers["h:1:a"]["in_flight"] == 0
    assert workers["h:2:b"]["lost"] is None and workers["h:2:b"]["heartbeat_age_s"] == 0.0
    s.on_worker_message(EP, b"h:1:a", protocol.Ready("S_A", 1, 1, 1), 4.0)  # back again
    assert [w["lost"] for w in logic.status(4.0)["workers"]] == [None, None]


def test_latency_histogram_counts_each_collected_item_once():
    h = LatencyHistogram()
    window = [0.002, 0.02, 0.2]
    h.update(window, 3)  # the first read: the window is what was collected
    h.update(window, 3)  # nothing new
    window.append(2.0)
    h.update(window, 4)
    snap = h.snapshot()
    assert snap["count"] == 4 and snap["sum_s"] == pytest.approx(2.222)
    cumulative = dict((le, n) for le, n in snap["buckets"])
    assert cumulative[0.0025] == 1 and cumulative[0.025] == 2 and cumulative[0.25] == 3
    assert cumulative[2.5] == 4 and cumulative[None] == 4
    assert [le for le, _ in snap["buckets"]] == [*LATENCY_BUCKETS_S, None]
    resumed = LatencyHistogram()  # a resumed run: 500 collected before, 2 samples since
    resumed.update([0.1, 0.1], 502)
    assert resumed.snapshot()["count"] == 2
    busy = LatencyHistogram()  # more collected between two reads than the window holds
    busy.update([], 0)
    busy.update([0.001, 0.1], 10)
    assert busy.snapshot()["count"] == 10 and dict(busy.snapshot()["buckets"])[0.001] == 5
    assert percentiles_ms([0.001, 0.002, 0.003, 0.004]) == {
        "p50": 3.0,
        "p90": 4.0,
        "p99": 4.0,
        "max": 4.0,
    }


def lone_distributor(procs, ep) -> Control:
    """A distributor with nobody else: it waits for its collector, answers operators."""
    task = make_task(ep.worker, 10)
    procs.start(
        "distributor",
        lambda: Distributor(ep.collector, ep.ack, tasks=[task], control_endpoint=ep.control).run(),
    )
    control = Control(ep.control)
    wait_for(control, lambda status: True)  # its control endpoint is bound (under load: later)
    return control


def read_events(url: str, until: float, counts: list[int]) -> None:
    with urllib.request.urlopen(url, timeout=10) as stream:
        while time.monotonic() < until:
            line = stream.readline()
            if not line:
                return
            if line.startswith(b"data: "):
                assert json.loads(line[6:])["endpoint"]
                counts.append(1)


def test_ten_event_streams_cost_the_distributor_one_read_a_second(procs, ep, board):
    control = lone_distributor(procs, ep)
    server = board()
    began = time.monotonic()
    until = began + 3.5
    counts: list[list[int]] = [[] for _ in range(10)]
    readers = [
        threading.Thread(target=read_events, args=(f"{server.url}events", until, c)) for c in counts
    ]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(15)
    elapsed = time.monotonic() - began
    assert server.poller.polls <= int(elapsed) + 1, (server.poller.polls, elapsed)
    assert all(len(c) >= 3 for c in counts), [len(c) for c in counts]  # each saw each read
    control.stop()
    procs.join(10)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_command_needs_the_header_and_a_known_name(procs, ep, board):
    control = lone_distributor(procs, ep)
    url = board().url + "api/command"
    plain = {"Content-Type": "application/json"}
    ours = {**plain, "X-Zmqpipeline-Dashboard": "1"}
    stop = json.dumps({"command": "stop"}).encode()
    code, body = post(url, stop, plain)  # what a form on another site could send
    assert code == 400 and "X-Zmqpipeline-Dashboard" in body["error"]
    assert post(url, b'{"command": "status"}', ours)[0] == 400  # reading is not steering
    assert post(url, b"not json", ours)[0] == 400
    assert control.status()["state"] == "waiting for collector"  # nothing got through
    code, body = post(url, b'{"command": "resume"}', ours)
    assert code == 400 and "not paused" in body["error"]  # the distributor's own refusal
    assert post(url, stop, ours) == (200, {"state": "finished"})
    procs.join(10)


def test_run_dashboard_prints_the_url_first_and_serves_the_run(tmp_path):
    """``zmqpipeline run PATH --dashboard``: a real subprocess running a real example."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zmqpipeline",
            "run",
            str(ROOT / "examples" / "singlethread"),
            "--dashboard",
            "127.0.0.1:0",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        first = run.stdout.readline()
        match = re.fullmatch(r"dashboard: (http://127\.0\.0\.1:\d+/)\n", first)
        assert match, first
        with urllib.request.urlopen(match.group(1), timeout=10) as page:
            assert b"zmqpipeline dashboard" in page.read()
        rest = run.stdout.read()
        assert run.wait(60) == 0, rest
        assert "collected 100 items" in rest
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
            run.wait(10)
