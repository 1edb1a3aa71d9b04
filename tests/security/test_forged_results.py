"""A peer that holds the run number (any worker learns it in WELCOME, under CURVE too with a
key from ``authorized/workers/``) pushes results for items it was never handed: forged
results for items not handed out yet, and a flood of far-ahead seqs. The collector must
change no result, call ``handle_collection`` for no forged item, count them and log once,
and keep its memory bounded. Real processes over real sockets."""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from typing import Any

import msgpack
import pytest
import zmq
from support.hostile import (
    HwmWatch,
    counting_collector,
    curve_client,
    join_as_worker,
    logging_to,
    read_text,
)
from support.pipelines import load, make_task, make_worker, run_distributor

from zmqpipeline import protocol
from zmqpipeline.security import (
    ENV_AUTHORIZED_KEYS,
    ENV_SECRET_KEY,
    ENV_SERVER_KEY,
    generate_keys,
)

pytestmark = pytest.mark.timeout(120)

N = 3000
MIB = 1024 * 1024
CURVE_ENV = (ENV_SECRET_KEY, ENV_SERVER_KEY, ENV_AUTHORIZED_KEYS)


def _keys(tmp_path: Any) -> dict[str, Any]:
    """A server pair (distributor, collector) and one worker pair in authorized/workers/."""
    folder = tmp_path / "keys"
    server_public, _ = generate_keys(folder, "server")
    worker_public, _ = generate_keys(folder, "worker")
    (folder / "authorized" / "workers").mkdir(parents=True)
    shutil.copy(worker_public, folder / "authorized" / "workers")
    return {"dir": folder, "server_public": server_public}


def _env(keys: dict[str, Any] | None, name: str) -> dict[str, str]:
    if keys is None:
        return {}
    return {
        ENV_SECRET_KEY: str(keys["dir"] / f"{name}.key_secret"),
        ENV_SERVER_KEY: str(keys["server_public"]),
        ENV_AUTHORIZED_KEYS: str(keys["dir"] / "authorized"),
    }


def _with_env(env: dict[str, str], target: Any) -> Any:
    def run() -> Any:
        for name in CURVE_ENV:
            os.environ.pop(name, None)
        os.environ.update(env)
        return target()

    return run


def _forger(endpoints: Any, keys: dict[str, Any] | None, messages: Any) -> None:
    """Join as a worker (with the worker's key under CURVE), learn the run, push
    ``messages(run)`` to the collector's results endpoint, then stay (until killed)."""
    ctx = zmq.Context()
    curve = None if keys is None else (keys["dir"] / "worker.key_secret", keys["server_public"])
    _, run = join_as_worker(ctx, endpoints.worker, curve=curve)
    push = ctx.socket(zmq.PUSH)
    if curve is not None:
        curve_client(push, *curve)
    push.connect(endpoints.collector)
    for frames in messages(run):
        push.send_multipart(frames)
    while True:
        time.sleep(1)  # holds its sockets open until the test kills it


def _result(run: int, worker_id: bytes, items: list[list[Any]], tokens: bytes = b"") -> list[bytes]:
    """A RESULT built by hand, as a forger would: with made-up tokens, or none."""
    fields = [run, "FIRST", worker_id, items] + ([tokens] if tokens else [])
    return [bytes((protocol.VERSION, protocol.RESULT)), msgpack.packb(fields)]


def _forged_results(run: int) -> list[list[bytes]]:
    """Results for items 1000-2999, not handed out yet (the workers are slow), two ways:
    with no token, and with made-up tokens under a made-up worker id."""
    plain = [[seq, {"i": seq + 1, "forged": True}] for seq in range(1000, 2000)]
    claimed = [[seq, {"i": seq + 1, "forged": True}] for seq in range(2000, 3000)]
    made_up = bytes(protocol.tokens.TOKEN_BYTES * 10)  # ten made-up tokens
    return [_result(run, b"attacker", plain), _result(run, b"some-worker", claimed, made_up)]


def _flood(run: int) -> list[list[bytes]]:
    """40 messages of 100 000 far-ahead seqs (within the element limit), then 4 of
    1 000 000 (over it)."""
    small = _result(run, b"attacker", [[10**6 + s, None] for s in range(100_000)])
    big = _result(run, b"attacker", [[10**7 + s, None] for s in range(10**6)])
    return [small] * 40 + [big] * 4


def _run(procs: Any, endpoints: Any, keys: dict[str, Any] | None, attack: Any) -> dict[str, Any]:
    task = make_task(endpoints.worker, N, delay=0.002)
    worker = make_worker(endpoints.worker, endpoints.collector)
    collector = counting_collector(endpoints)
    watch = HwmWatch(procs)
    log = endpoints.results.with_name("collector.log")
    target = logging_to(log, lambda: collector().run())
    procs.start("collector", _with_env(_env(keys, "server"), target))
    for i in range(2):
        procs.start(f"worker{i}", _with_env(_env(keys, "worker"), lambda: worker().run()))
    procs.start("attacker", lambda: _forger(endpoints, keys, attack))
    distributor = _with_env(_env(keys, "server"), lambda: run_distributor(endpoints, [task]))
    procs.start("distributor", distributor)
    names = ["collector", "distributor", "worker0", "worker1"]
    deadline = time.monotonic() + 90
    for name in names:
        procs.started[name].join(max(0.1, deadline - time.monotonic()))
    codes = {name: procs.started[name].exitcode for name in names}
    peak = watch.stop()
    procs.kill("attacker")
    assert codes == dict.fromkeys(names, 0), codes
    results = load(endpoints.results)
    forged = load(f"{endpoints.results}.forged.json")["forged"]
    return {"results": results, "forged": forged, "peak": peak, "log": read_text(log)}


def _assert_untouched(results: dict[str, Any]) -> None:
    items = [item[1] for item in results["items"]]
    assert not [item for item in items if item.get("forged")], "a forged result was collected"
    counts = Counter(item["i"] for item in items)
    assert sorted(counts) == list(range(1, N + 1)) and set(counts.values()) == {1}


@pytest.mark.parametrize("secured", [False, True], ids=["plain", "curve"])
def test_forged_results_change_no_result_and_are_logged_once(
    procs, endpoints, transport, secured, tmp_path
):
    if secured and transport != "tcp":
        pytest.skip("CURVE secures tcp only")
    keys = _keys(tmp_path) if secured else None
    run = _run(procs, endpoints, keys, _forged_results)
    _assert_untouched(run["results"])
    assert run["forged"] == 2000  # every forged item counted
    assert run["log"].count("dropped a message (forged result") == 1, run["log"]
    assert "forged result x2" in run["log"]  # the closing count: the two forged messages


def test_a_flood_of_far_ahead_seqs_costs_bounded_memory_and_no_collection(procs, endpoints):
    run = _run(procs, endpoints, None, _flood)
    _assert_untouched(run["results"])  # handle_collection ran exactly N times
    assert run["forged"] == 40 * 100_000  # refused, each message at its first item
    # The flood is about 90 MiB on the wire, much of it queued in libzmq at once: the
    # collector holds at most that plus one message decoded (before: 26 M calls, GiBs).
    assert run["peak"]["collector"] < 150, run["peak"]
    log = run["log"]
    assert "too many elements x4" in log and "forged result x40" in log, log
    assert log.count("dropped a message (forged result") == 1
