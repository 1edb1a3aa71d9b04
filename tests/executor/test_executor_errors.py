"""What the Executor refuses, each error naming its cause: a callable object, a name
that does not lead back to its function, a function defined where workers cannot
import it (an interactive session; a module that lacks it on the worker), bad
arguments to ``Executor`` and to ``zmqpipeline executor-worker``; and retries, off by
default, following ``max_attempts`` and ``retry_for`` when asked."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import executor_funcs as f
import pytest

from zmqpipeline import Executor, RemoteError


@pytest.fixture(scope="module")
def ex() -> Iterator[Executor]:
    with Executor(workers=1) as executor:
        yield executor


def test_a_callable_object_is_refused_naming_its_type(ex: Executor) -> None:
    with pytest.raises(TypeError, match="cannot send a CallMe object: only functions"):
        ex.submit(f.CallMe())


def test_a_name_that_leads_to_another_function_is_refused(ex: Executor) -> None:
    with pytest.raises(
        TypeError, match="cannot send executor_funcs:_undecorated: that name does not lead back"
    ):
        ex.submit(f.decorated, 1)
    assert ex.submit(f.rebound, 1, 2).result(timeout=30) == 3  # add, by its own name


def test_a_function_of_an_interactive_session_is_refused(tmp_path: Path) -> None:
    program = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from zmqpipeline import Executor
        def here(x):
            return x
        ex = Executor(workers=0, endpoint="ipc://{tmp_path}/work")
        try:
            ex.submit(here, 1)
        except TypeError as exc:
            print(exc)
        ex.shutdown()
    """)
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "cannot send a function defined in an interactive session" in done.stdout


def test_a_module_without_the_function_on_the_worker_names_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "defined_later.py").write_text(
        textwrap.dedent("""
            import os
            if os.environ.get("ZMQP_TEST_DEFINE_LATER"):
                def here(x):
                    return x
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with Executor(workers=1) as ex:  # its worker has the folder, not the variable
        monkeypatch.setenv("ZMQP_TEST_DEFINE_LATER", "1")
        import defined_later

        try:
            with pytest.raises(ImportError) as info:
                ex.submit(defined_later.here, 1).result(timeout=30)
        finally:
            sys.modules.pop("defined_later", None)
    assert "imported module 'defined_later' but it has no 'here'" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "cause"),
    [
        ({"workers": 1, "max_attempts": 0}, "max_attempts must be an int >= 1, not 0"),
        ({"workers": 1, "window": 0}, "window must be an int >= 1, not 0"),
        ({"workers": 1, "threads": 0}, "threads must be an int >= 1, not 0"),
        ({"workers": "2"}, "workers must be an int >= 0, not '2'"),
        ({"workers": 1, "prefetch": -1}, "prefetch must be None or an int >= 0, not -1"),
    ],
)
def test_bad_executor_arguments_are_named(kwargs: dict[str, object], cause: str) -> None:
    with pytest.raises(ValueError, match=cause):
        Executor(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "cause"),
    [
        (["--threads", "0"], "--threads must be at least 1, not 0"),
        (["--prefetch", "-1"], "--prefetch must be at least 0, not -1"),
    ],
)
def test_bad_executor_worker_arguments_are_named(
    args: list[str], cause: str, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "zmqpipeline", "executor-worker", f"ipc://{tmp_path}/w"]
    done = subprocess.run(command + args, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert cause in done.stderr


def test_calls_are_not_retried_by_default(ex: Executor, tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    with pytest.raises(ConnectionError, match="attempt 1"):
        ex.submit(f.flaky, str(counter), 1).result(timeout=30)
    assert counter.read_text() == "x"


def test_retries_follow_max_attempts_and_retry_for(tmp_path: Path) -> None:
    with Executor(workers=1, max_attempts=3, retry_for=(ConnectionError,)) as ex:
        recovers = ex.submit(f.flaky, str(tmp_path / "a"), 2)
        exhausted = ex.submit(f.flaky, str(tmp_path / "b"), 5)
        not_listed = ex.submit(f.flaky, str(tmp_path / "c"), 5, "ValueError")
        assert recovers.result(timeout=30) == 3
        with pytest.raises(ConnectionError, match="attempt 3"):
            exhausted.result(timeout=30)
        with pytest.raises(ValueError, match="attempt 1"):
            not_listed.result(timeout=30)
        with pytest.raises(RemoteError, match="UserFailure: once"):
            ex.submit(f.raise_user, "once").result(timeout=30)
    assert (tmp_path / "b").read_text() == "xxx"  # three attempts, no more
    assert (tmp_path / "c").read_text() == "x"  # not in retry_for: failed at once
