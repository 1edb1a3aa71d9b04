"""The Executor over real worker processes: submit, map, shutdown, cancel, the futures
helpers, asyncio, exceptions of the function, and what submit refuses, each naming why."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import executor_funcs as f
import pytest

from zmqpipeline import Executor, RemoteError


@pytest.fixture(scope="module")
def ex() -> Iterator[Executor]:
    with Executor(workers=2) as executor:
        yield executor


def test_submit_returns_a_future_of_the_result(ex: Executor) -> None:
    future = ex.submit(f.add, 2, b=40)
    assert isinstance(future, cf.Future)
    assert future.result(timeout=20) == 42


def test_map_gives_results_in_input_order(ex: Executor) -> None:
    # the later inputs finish first: order comes from map, not from the workers
    delays = [0.05 * (i % 4) for i in range(40)]
    assert list(ex.map(f.sleep_then, delays, range(40), timeout=30)) == list(range(40))


def test_map_with_chunksize_gives_the_same_results(ex: Executor) -> None:
    assert list(ex.map(f.square, range(1000), chunksize=37)) == [i * i for i in range(1000)]


def test_calls_run_in_the_worker_processes(ex: Executor) -> None:
    pids = {ex.submit(f.pid).result(timeout=20) for _ in range(50)}
    assert os.getpid() not in pids
    assert pids <= set(ex.worker_pids)


def test_as_completed_and_wait_work_with_its_futures(ex: Executor, tmp_path: Path) -> None:
    futures = [ex.submit(f.sleep_then, 0.01 * i, i) for i in range(10)]
    assert sorted(fu.result() for fu in cf.as_completed(futures, timeout=30)) == list(range(10))
    gate = tmp_path / "gate"
    fast = ex.submit(f.add, 1, 1)
    slow = ex.submit(f.wait_for_file, str(gate))
    done, not_done = cf.wait([slow, fast], timeout=30, return_when=cf.FIRST_COMPLETED)
    assert done == {fast} and not_done == {slow}
    done, not_done = cf.wait([slow], timeout=0.2)
    assert not done and not_done == {slow}
    with pytest.raises(TimeoutError):
        list(cf.as_completed([slow], timeout=0.2))
    gate.touch()
    done, not_done = cf.wait([slow, fast], timeout=30)
    assert not not_done and slow.result() == str(gate)


def test_asyncio_wrap_future_and_run_in_executor(ex: Executor) -> None:
    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        wrapped = await asyncio.wrap_future(ex.submit(f.add, 1, 2))
        ran = await loop.run_in_executor(ex, f.square, 7)
        return wrapped, ran

    assert asyncio.run(main()) == (3, 49)


@pytest.mark.parametrize("kind", ["ValueError", "KeyError", "ZeroDivisionError"])
def test_a_builtin_exception_comes_back_as_the_same_type(ex: Executor, kind: str) -> None:
    future = ex.submit(f.raise_builtin, kind, "it went wrong")
    with pytest.raises(getattr(__builtins__, kind, None) or eval(kind)) as info:
        future.result(timeout=20)
    assert type(info.value).__name__ == kind
    assert info.value.args == ("it went wrong",)
    assert "raise_builtin" in str(info.value.__cause__)  # the worker's traceback


def test_a_user_exception_comes_back_as_remote_error(ex: Executor) -> None:
    with pytest.raises(RemoteError) as info:
        ex.submit(f.raise_user, "user trouble").result(timeout=20)
    err = info.value
    assert err.type_name == "executor_funcs.UserFailure"
    assert err.message == "user trouble"
    assert "raise UserFailure(message)" in err.remote_traceback


def test_map_raises_at_the_failing_item_after_the_earlier_results(ex: Executor) -> None:
    for chunksize in (1, 7):
        got = []
        with pytest.raises(ValueError, match="bad value 30"):
            for value in ex.map(f.fail_on, range(50), [30] * 50, chunksize=chunksize):
                got.append(value)
        assert got == list(range(30))


def test_a_result_msgpack_cannot_carry_fails_with_type_error(ex: Executor) -> None:
    with pytest.raises(TypeError, match="returned a object"):
        ex.submit(f.returns_unpackable).result(timeout=20)


def test_class_and_static_methods_and_builtins_travel(ex: Executor) -> None:
    assert ex.submit(f.Holder.static, 1).result(timeout=20) == 2
    assert ex.submit(f.Holder.klass, 3).result(timeout=20) == "Holder:3"
    assert ex.submit(pow, 2, 10).result(timeout=20) == 1024
    assert ex.submit(os.path.join, "a", "b").result(timeout=20) == "a/b"


def _closure_maker() -> object:
    captured = 3

    def closure(x: int) -> int:
        return x + captured

    return closure


def _nested_maker() -> object:
    def nested(x: int) -> int:
        return x

    return nested


@pytest.mark.parametrize(
    ("fn", "args", "cause"),
    [
        (lambda x: x, (1,), "cannot send a lambda"),
        (_closure_maker(), (1,), r"cannot send the closure .*\(captured\)"),
        (_nested_maker(), (1,), "cannot send the nested function"),
        (f.Holder().method, (), "cannot send the bound method Holder.method"),
        (f.add, (object(), 1), r"argument 0 of executor_funcs:add: a object"),
        (f.add, ({1, 2},), "argument 0 .*a set"),
        (f.sleep_then, (0,), None),  # a keyword argument, below
    ],
)
def test_submit_refuses_what_cannot_travel_and_says_why(
    ex: Executor, fn: object, args: tuple[object, ...], cause: str | None
) -> None:
    if cause is None:
        with pytest.raises(TypeError, match=r"keyword argument 'value' .* at \['k'\]: a bytearray"):
            ex.submit(fn, *args, value={"k": bytearray(b"x")})  # type: ignore[arg-type]
        return
    with pytest.raises(TypeError, match=cause):
        ex.submit(fn, *args)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=cause):
        ex.map(fn, *[[a] for a in args])  # type: ignore[arg-type]


def test_an_unimportable_function_names_the_module_and_the_workers_path(
    ex: Executor, tmp_path: Path
) -> None:
    # a module the caller can import but the workers (started before) cannot
    (tmp_path / "only_in_caller.py").write_text(
        textwrap.dedent("""
            def here(x):
                return x
        """)
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import only_in_caller

        with pytest.raises(ImportError) as info:
            ex.submit(only_in_caller.here, 1).result(timeout=20)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("only_in_caller", None)
    text = str(info.value)
    assert "cannot import module 'only_in_caller' for only_in_caller:here" in text
    assert "the worker's sys.path starts [" in text


def _until_running(future: cf.Future[object]) -> None:
    """The feeder has handed it to the distributor (a state with no event to wait on)."""
    deadline = time.monotonic() + 10
    while not future.running():
        assert time.monotonic() < deadline, "the call was never handed out"
        time.sleep(0.005)


def test_cancel_works_for_a_call_not_handed_out(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with Executor(workers=1, window=1) as ex:  # the calls after the first wait here
        running = ex.submit(f.wait_for_file, str(gate))
        _until_running(running)
        waiting = [ex.submit(f.add, i, 1) for i in range(5)]
        assert all(fu.cancel() for fu in waiting)
        assert not running.cancel()  # handed out: it runs
        gate.touch()
        assert running.result(timeout=20) == str(gate)
        assert all(fu.cancelled() for fu in waiting)
        assert ex.submit(f.add, 1, 1).result(timeout=20) == 2


def test_shutdown_cancel_futures_cancels_what_waits_and_finishes_the_rest(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    ex = Executor(workers=1, window=1)
    running = ex.submit(f.wait_for_file, str(gate))
    _until_running(running)
    waiting = [ex.submit(f.add, i, 1) for i in range(5)]
    gate.touch()
    ex.shutdown(wait=True, cancel_futures=True)
    assert running.result() == str(gate)
    assert all(fu.cancelled() for fu in waiting)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(f.add, 1, 2)
