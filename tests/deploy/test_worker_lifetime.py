"""``zmqpipeline worker --lifetime/--lifetime-stagger/--idle-timeout`` in a real run.

The issue's case is a 20 s lifetime; here it is 3 s with a 1 s stagger (the same path,
a shorter test), in a run of 10 ms items over tcp with CURVE.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_support import APP, Roles, app_env, free_ports, make_keys, wait_listening

ITEMS = 600  # 6 s of 10 ms items: two workers need ~3 s, one ~6 s
LIFETIME_S, STAGGER_S = 3.0, 1.0


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Roles]:
    roles = Roles(tmp_path)
    try:
        yield roles
    finally:
        roles.close()


def _exit_time(process: subprocess.Popen[str], since: float, out: dict[str, float]) -> None:
    process.wait(60)
    out["seconds"] = time.monotonic() - since


def test_a_worker_leaves_at_its_lifetime_and_nothing_is_collected_twice(
    started: Roles, tmp_path: Path
) -> None:
    keys = make_keys(tmp_path / "keys")
    ports = free_ports(3)
    record, executions = tmp_path / "collected.txt", tmp_path / "executed.txt"
    env = {**app_env(ports, items=ITEMS), "DEPLOY_RECORD": str(record)}
    collector = started.start(["collector", f"{APP}:Results"], {**env, **keys.server}, "coll")
    distributor = started.start(["distributor", str(APP)], {**env, **keys.server}, "dist")
    wait_listening(ports[0])
    worker_env = {**env, **keys.worker, "DEPLOY_EXECUTIONS": str(executions)}
    stays = started.start(["worker", f"{APP}:Sleeper"], worker_env, "stays")
    begun = time.monotonic()
    leaves = started.start(
        [
            "worker",
            f"{APP}:Sleeper",
            "--lifetime",
            f"{LIFETIME_S:g}s",
            "--lifetime-stagger",
            f"{STAGGER_S:g}s",
        ],
        worker_env,
        "leaves",
    )
    left: dict[str, float] = {}
    timer = threading.Thread(target=_exit_time, args=(leaves, begun, left))
    timer.start()
    assert distributor.wait(60) == 0, started.output("dist")
    timer.join(60)
    assert (leaves.returncode, stays.wait(30), collector.wait(30)) == (0, 0, 0)
    # it left within [lifetime - stagger, lifetime], plus its start-up (~0.3 s) and exit
    assert LIFETIME_S - STAGGER_S <= left["seconds"] <= LIFETIME_S + 1.0, left
    counts = Counter(int(n) for n in record.read_text().split())
    assert sum(counts.values()) == ITEMS and sorted(counts) == list(range(ITEMS))
    ran = Counter(int(n) for n in executions.read_text().split())
    by_worker = started.output("coll")
    assert "2 workers" in by_worker and "0 twice" in by_worker, by_worker
    twice = sum(count - 1 for count in ran.values())
    print(f"left after {left['seconds']:.2f} s; items executed twice: {twice}")
    assert twice == 0, f"{twice} item(s) executed again after the worker left"


def test_idle_timeout_ends_a_worker_no_distributor_answers(started: Roles, tmp_path: Path) -> None:
    """Liveness in tests is 1 s (tests/conftest.py): silence is seen each second."""
    env = app_env(free_ports(3))
    begun = time.monotonic()
    worker = started.start(["worker", f"{APP}:Sleeper", "--idle-timeout", "2s"], env, "idle")
    assert worker.wait(15) == 0, started.output("idle")
    assert 2.0 <= time.monotonic() - begun < 6.0
    assert "no distributor for 2 s, leaving" in started.output("idle")


def test_a_bad_duration_is_named() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "zmqpipeline", "worker", f"{APP}:Sleeper", "--lifetime", "soon"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "'soon' is not a duration (e.g. 45s, 5m, 1.5h, 2d)" in done.stderr


def test_durations_and_the_moment_a_worker_leaves() -> None:
    from zmqpipeline.worker.lifetime import Lifetime, parse_duration

    assert [parse_duration(t) for t in ("90", "45s", "5m", "1.5h", "2d")] == [
        90.0,
        45.0,
        300.0,
        5400.0,
        172800.0,
    ]
    moments = [Lifetime.starting(100.0, 60.0, 10.0).leave_at for _ in range(200)]
    assert all(m is not None and 150.0 <= m <= 160.0 for m in moments)
    assert Lifetime.starting(100.0, 0.0).leave_at is None  # 0: no limit
    life = Lifetime.starting(100.0, 2.0)
    assert (life.over(101.9), life.over(102.0), life.poll_ms(101.5, 5000)) == (False, True, 501)
