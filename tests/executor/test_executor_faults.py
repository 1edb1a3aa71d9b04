"""The Executor when workers die, join from elsewhere, or refuse: a SIGKILLed worker
loses no call, a worker process connecting over tcp joins a running executor,
``--allow-module`` limits what a worker runs, and ``map`` reads an endless input in a
bounded window."""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import math
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import executor_funcs as f
import pytest
from support.procs import free_port

from zmqpipeline import Executor

HERE = Path(__file__).parent


def _remote_worker(endpoint: str, *extra: str) -> subprocess.Popen[bytes]:
    """A worker started as another machine would start it: the command, over tcp."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    command = [sys.executable, "-m", "zmqpipeline", "executor-worker", endpoint, *extra]
    return subprocess.Popen(command, env=env)


def _end(process: subprocess.Popen[bytes]) -> int:
    try:
        return process.wait(15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_worker_killed_mid_map_loses_nothing_and_resolves_every_future_once() -> None:
    resolved: Counter[int] = Counter()
    with Executor(workers=2) as ex:
        futures = [ex.submit(f.sleep_then, 0.01, i) for i in range(300)]
        for i, future in enumerate(futures):
            future.add_done_callback(lambda _, i=i: resolved.update([i]))
        futures[20].result(timeout=30)  # both workers are at work
        victim = ex.worker_pids[0]
        os.kill(victim, signal.SIGKILL)
        results = [fu.result(timeout=30) for fu in futures]
        after = ex.submit(f.pid).result(timeout=30)
    assert results == list(range(300))
    assert resolved == Counter(range(300))  # each future resolved once, none twice
    assert after != victim


def test_a_remote_worker_joins_a_running_executor_over_tcp() -> None:
    port = free_port()
    while True:  # results come back on the next port: it must be free too
        try:
            import socket

            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port + 1))
            break
        except OSError:
            port = free_port()
    with Executor(workers=1, endpoint=f"tcp://127.0.0.1:{port}") as ex:
        local = set(ex.worker_pids)
        assert ex.submit(f.pid).result(timeout=30) in local
        remote = _remote_worker(f"tcp://127.0.0.1:{port}")
        try:
            seen: set[int] = set()
            for _ in range(200):
                seen |= set(ex.map(f.sleep_then, [0.005] * 20, [None] * 20)) - {None}
                seen |= {ex.submit(f.pid).result(timeout=30) for _ in range(4)}
                if remote.pid in seen:
                    break
            assert remote.pid in seen, "the remote worker never ran a call"
            assert list(ex.map(f.square, range(100))) == [i * i for i in range(100)]
        finally:
            ex.shutdown(wait=True)
            code = _end(remote)
    assert code == 0  # it ended with the executor


def test_an_executor_without_local_workers_waits_for_remote_ones() -> None:
    port = free_port()
    with Executor(workers=0, endpoint=f"tcp://127.0.0.1:{port}") as ex:
        future = ex.submit(f.add, 1, 2)
        done, _ = cf.wait([future], timeout=0.3)
        assert not done  # nobody to run it yet
        remote = _remote_worker(f"tcp://127.0.0.1:{port}")
        try:
            assert future.result(timeout=30) == 3
        finally:
            ex.shutdown(wait=True)
            _end(remote)


def test_allow_module_limits_what_a_worker_runs() -> None:
    port = free_port()
    with Executor(workers=0, endpoint=f"tcp://127.0.0.1:{port}") as ex:
        remote = _remote_worker(f"tcp://127.0.0.1:{port}", "--allow-module", "math")
        try:
            assert ex.submit(math.sqrt, 16).result(timeout=30) == 4.0
            with pytest.raises(
                PermissionError, match=r"only functions of math .*not executor_funcs:add"
            ):
                ex.submit(f.add, 1, 2).result(timeout=30)
        finally:
            ex.shutdown(wait=True)
            _end(remote)


def test_map_reads_an_endless_input_in_a_bounded_window() -> None:
    taken = itertools.count()

    def endless() -> Iterator[int]:
        for i in itertools.count():
            next(taken)
            yield i

    with Executor(workers=2) as ex:
        results = ex.map(f.square, endless(), buffersize=64)
        got = list(itertools.islice(results, 5000))
        read = next(taken)
        results.close()  # what was read ahead is cancelled or finishes
    assert got == [i * i for i in range(5000)]
    assert 5000 <= read <= 5000 + 64 + 1


def test_map_without_buffersize_is_bounded_too() -> None:
    taken = itertools.count()

    def endless() -> Iterator[int]:
        while True:
            yield next(taken)

    with Executor(workers=1) as ex:
        results = ex.map(f.square, endless())
        assert next(results) == 0
        read = next(taken)
        results.close()
    assert read <= 10_000  # a bound per worker, not the whole (endless) input
