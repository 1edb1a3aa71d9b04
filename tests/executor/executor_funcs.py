"""Functions the executor tests send to workers: importable by name from this module
(the workers get the tests' ``sys.path``)."""

from __future__ import annotations

import os
import time
from typing import Any


class UserFailure(Exception):
    """A user-defined exception type: it comes back as a RemoteError."""


def add(a: int, b: int = 0) -> int:
    return a + b


def square(x: int) -> int:
    return x * x


def noop() -> None:
    return None


def pid() -> int:
    return os.getpid()


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def raise_builtin(kind: str, message: str) -> None:
    raise {"ValueError": ValueError, "KeyError": KeyError, "ZeroDivisionError": ZeroDivisionError}[
        kind
    ](message)


def raise_user(message: str) -> None:
    raise UserFailure(message)


def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"bad value {x}")
    return x


def returns_unpackable() -> Any:
    return object()


def wait_for_file(path: str, timeout: float = 30.0) -> str:
    """Block until ``path`` exists (the test creates it): a call that is surely running."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)
    return path


class Holder:
    def method(self) -> int:
        return 1

    @staticmethod
    def static(x: int) -> int:
        return x + 1

    @classmethod
    def klass(cls, x: int) -> str:
        return f"{cls.__name__}:{x}"


def mul(x: int, y: int) -> int:
    return x * y


def capture(*args: Any, **kwargs: Any) -> Any:
    return args, kwargs


def sleep_and_raise(seconds: float) -> None:
    time.sleep(seconds)
    raise Exception("this is an exception")


def flaky(path: str, fails: int, kind: str = "ConnectionError") -> int:
    """Count this attempt in the file at ``path``; raise ``kind`` for the first ``fails``
    attempts, then return the number of attempts."""
    with open(path, "a") as out:
        out.write("x")
    with open(path) as counted:
        attempts = len(counted.read())
    if attempts <= fails:
        raise {"ConnectionError": ConnectionError, "ValueError": ValueError}[kind](
            f"attempt {attempts}"
        )
    return attempts


class CallMe:
    """A callable object: it has no import name of its own."""

    def __call__(self) -> int:
        return 1


def _undecorated(x: int) -> int:
    return x


def without_wraps(fn: Any) -> Any:
    def wrapper(*args: Any) -> Any:
        return fn(*args)

    wrapper.__qualname__ = fn.__qualname__  # half of functools.wraps: the name, not the link
    return wrapper


#: A module-level name bound to a function whose own name leads elsewhere.
decorated = without_wraps(_undecorated)
rebound = add


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def same(x: Any) -> Any:
    return x


def object_at(x: int, bad: int) -> Any:
    """``x``, but an object msgpack cannot carry for ``bad``."""
    return object() if x == bad else x
