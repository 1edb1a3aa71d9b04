"""What CPython's own tests (Lib/test/test_concurrent_futures/) check of any executor,
checked of ours over real worker processes: submit and its keywords, map's order,
exceptions, timeout, chunksize and buffersize, shutdown and use after it, the context
manager, as_completed and wait with timeouts, cancellation, exit without shutdown.
What does not apply to an executor that names functions instead of pickling them is
listed in docs/tutorial/executor.md."""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import executor_funcs as f
import pytest

from zmqpipeline import Executor

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def ex() -> Iterator[Executor]:
    # two threads each: a call queued on a worker behind a blocked one still runs
    with Executor(workers=2, threads=2) as executor:
        yield executor


# -- submit ----------------------------------------------------------------------------


def test_submit(ex: Executor) -> None:
    assert ex.submit(pow, 2, 8).result(timeout=20) == 256


def test_submit_keyword(ex: Executor) -> None:
    assert ex.submit(f.mul, 2, y=8).result(timeout=20) == 16
    # 'fn' and 'self' are ordinary keywords of the function, not of submit
    args, kwargs = ex.submit(f.capture, 1, self=2, fn=3).result(timeout=20)
    assert args == [1] and kwargs == {"self": 2, "fn": 3}  # tuples travel as lists


def test_exception_is_set_on_the_future(ex: Executor) -> None:
    future = ex.submit(f.sleep_and_raise, 0.0)
    assert isinstance(future.exception(timeout=20), Exception)
    assert str(future.exception()) == "this is an exception"
    with pytest.raises(Exception, match="this is an exception"):
        future.result()


# -- map --------------------------------------------------------------------------------


def test_map(ex: Executor) -> None:
    assert list(ex.map(pow, range(10), range(10))) == list(map(pow, range(10), range(10)))
    assert list(ex.map(pow, range(10), range(10), chunksize=3)) == [i**i for i in range(10)]


def test_map_of_nothing(ex: Executor) -> None:
    assert list(ex.map(f.square, [])) == []
    assert list(ex.map(f.noop)) == []  # no iterables: no calls


def test_map_stops_at_the_shortest_iterable(ex: Executor) -> None:
    assert list(ex.map(f.mul, range(5), itertools.count())) == [0, 1, 4, 9, 16]


def test_map_exception(ex: Executor) -> None:
    results = ex.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
    assert next(results) == [0, 1]
    assert next(results) == [0, 1]
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_map_timeout(ex: Executor, tmp_path: Path) -> None:
    there, never = tmp_path / "there", tmp_path / "never"
    there.touch()
    results = []
    with pytest.raises(TimeoutError):
        for value in ex.map(f.wait_for_file, [str(there), str(there), str(never)], timeout=1):
            results.append(value)
    assert results == [str(there), str(there)]
    never.touch()  # the call that timed out ends too


def test_map_validates_chunksize_and_buffersize(ex: Executor) -> None:
    with pytest.raises(ValueError, match="chunksize must be >= 1"):
        ex.map(f.square, [1], chunksize=0)
    with pytest.raises(ValueError, match="buffersize must be None or >= 1"):
        ex.map(f.square, [1], buffersize=0)
    with pytest.raises(TypeError, match="buffersize must be an integer or None"):
        ex.map(f.square, [1], buffersize=2.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("buffersize", [1, 5])
def test_map_buffersize(ex: Executor, buffersize: int) -> None:
    assert list(ex.map(f.square, range(20), buffersize=buffersize)) == [i * i for i in range(20)]


def test_map_buffersize_on_infinite_iterables(ex: Executor) -> None:
    results = ex.map(str, itertools.count(), buffersize=2)
    assert [next(results) for _ in range(3)] == ["0", "1", "2"]
    results.close()
    both = ex.map(f.mul, itertools.count(), itertools.count(), buffersize=2)
    assert next(both) == 0 and next(both) == 1
    both.close()


def test_map_submits_its_first_calls_at_once(ex: Executor) -> None:
    taken = []

    def source() -> Iterator[int]:
        for i in range(10):
            taken.append(i)
            yield i

    results = ex.map(f.square, source(), buffersize=4)
    assert taken == [0, 1, 2, 3]  # before the first next(), as Executor.map does
    assert list(results) == [i * i for i in range(10)]


# -- as_completed and wait --------------------------------------------------------------


def test_as_completed_no_timeout_and_duplicates(ex: Executor) -> None:
    futures = [ex.submit(f.mul, i, 2) for i in range(10)]
    seen = list(cf.as_completed(futures + futures))
    assert len(seen) == 10 and set(seen) == set(futures)


def test_as_completed_zero_timeout(ex: Executor, tmp_path: Path) -> None:
    done = ex.submit(f.add, 1, 1)
    done.result(timeout=20)
    pending = ex.submit(f.wait_for_file, str(tmp_path / "gate"))
    completed = []
    with pytest.raises(TimeoutError, match=r"1 \(of 2\) futures unfinished"):
        for future in cf.as_completed([done, pending], timeout=0):
            completed.append(future)
    assert completed == [done]
    (tmp_path / "gate").touch()
    pending.result(timeout=20)


def test_wait_first_completed_first_exception_all_completed(ex: Executor, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    blocked = ex.submit(f.wait_for_file, str(gate))
    raising = ex.submit(f.sleep_and_raise, 0.0)
    done, not_done = cf.wait([blocked, raising], timeout=20, return_when=cf.FIRST_EXCEPTION)
    assert done == {raising} and not_done == {blocked}
    ok = ex.submit(f.add, 1, 2)
    done, not_done = cf.wait([blocked, ok], timeout=20, return_when=cf.FIRST_COMPLETED)
    assert done == {ok} and not_done == {blocked}
    started = time.monotonic()
    done, not_done = cf.wait([blocked, ok], timeout=0.3)
    assert not_done == {blocked} and time.monotonic() - started >= 0.3
    gate.touch()
    done, not_done = cf.wait([blocked, ok, raising], timeout=20, return_when=cf.ALL_COMPLETED)
    assert not not_done


# -- cancellation, shutdown, the context manager -----------------------------------------


def test_cancel_a_running_call_fails_a_waiting_one_succeeds(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with Executor(workers=1, window=1) as ex:
        running = ex.submit(f.wait_for_file, str(gate))
        later = ex.submit(f.add, 1, 2)
        deadline = time.monotonic() + 10
        while not running.running():  # the feeder handed it out (no event to await)
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert later.cancel() and later.cancelled()
        assert not running.cancel()
        with pytest.raises(cf.CancelledError):
            later.result()
        gate.touch()
    assert running.result() == str(gate)


def test_run_after_shutdown_and_shutdown_twice() -> None:
    ex = Executor(workers=1)
    assert ex.submit(f.add, 1, 1).result(timeout=20) == 2
    ex.shutdown()
    ex.shutdown()  # a second shutdown is harmless
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.submit(pow, 2, 5)
    with pytest.raises(RuntimeError):
        list(ex.map(f.square, [1]))


def test_context_manager_shuts_down_after_every_call_is_resolved() -> None:
    with Executor(workers=2) as ex:
        futures = [ex.submit(f.sleep_then, 0.02, i) for i in range(20)]
    assert all(fu.done() for fu in futures)
    assert [fu.result() for fu in futures] == list(range(20))
    assert not any(t.is_alive() for t in ex._threads)
    assert all(child.poll() is not None for child in ex._children)


def test_shutdown_without_wait_still_resolves_the_calls() -> None:
    ex = Executor(workers=1)
    futures = [ex.submit(f.sleep_then, 0.05, i) for i in range(5)]
    ex.shutdown(wait=False)
    assert [fu.result(timeout=20) for fu in futures] == list(range(5))
    ex.shutdown(wait=True)  # joins what is left (the test checks no thread stays)


def test_shutdown_cancel_futures_leaves_no_call_unresolved(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    ex = Executor(workers=1, threads=2, window=2)
    running = [ex.submit(f.wait_for_file, str(gate)) for _ in range(2)]
    waiting = [ex.submit(f.add, i, 1) for i in range(10)]
    deadline = time.monotonic() + 10
    while not all(fu.running() for fu in running):  # handed out (no event to await)
        assert time.monotonic() < deadline
        time.sleep(0.005)
    ex.shutdown(wait=False, cancel_futures=True)
    assert all(fu.cancelled() for fu in waiting)
    gate.touch()
    ex.shutdown(wait=True)
    assert [fu.result() for fu in running] == [str(gate)] * 2


def test_negative_workers_are_refused() -> None:
    with pytest.raises(ValueError, match="workers must be an int >= 0"):
        Executor(workers=-1)
    with pytest.raises(ValueError, match="needs an endpoint"):
        Executor(workers=0)


def test_exit_without_shutdown_finishes_the_calls(tmp_path: Path) -> None:
    """The interpreter exits with an executor not shut down: its calls still finish (as
    CPython's test_interpreter_shutdown checks of ProcessPoolExecutor)."""
    script = tmp_path / "no_shutdown.py"
    script.write_text(
        textwrap.dedent("""
            import executor_funcs as f
            from zmqpipeline import Executor

            if __name__ == "__main__":
                ex = Executor(workers=1)
                future = ex.submit(f.sleep_then, 0.3, "apple")
                future.add_done_callback(lambda fu: print(fu.result(), flush=True))
        """)
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "apple"
