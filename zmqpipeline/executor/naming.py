"""A function travels by its import name, ``module:qualname``, never pickled.

:func:`function_name` turns a function into that name in the caller, and refuses at once,
with a :class:`TypeError` saying why, what a worker could not import by name: a lambda,
a closure, a nested function, a bound method of an instance, a callable object.
:func:`check_arguments` refuses arguments msgpack cannot carry. :class:`Resolver` is the
worker's side: the name back to the function, through ``--allow-module`` if given.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..utils.serializer import find_unpackable

__all__ = ["Resolver", "check_arguments", "function_name", "module_allowed"]

_SIMPLE = (int, float, str, bytes, bool, type(None))
_NAMES: dict[Any, str] = {}  # functions already named (they are hashable and live long)
_NAMES_MAX = 4096
_HOW = "define it with def at the top level of a module the workers can import"


def function_name(fn: Any) -> str:
    """``module:qualname`` of ``fn``, checked to import back to ``fn`` here."""
    try:
        return _NAMES[fn]
    except (KeyError, TypeError):
        pass
    name = _name_of(fn)
    qualname = name.partition(":")[2]
    module = fn.__module__ if getattr(fn, "__module__", None) == "__main__" else name.split(":")[0]
    try:
        found = _lookup(sys.modules.get(module), qualname)
    except AttributeError:
        found = None
    if found is None or not _same(found, fn):
        raise TypeError(
            f"cannot send {name}: that name does not lead back to this function in its "
            f"module (a decorator without functools.wraps, or a name rebound?); {_HOW}"
        )
    if len(_NAMES) < _NAMES_MAX:
        try:
            _NAMES[fn] = name
        except TypeError:
            pass
    return name


def _name_of(fn: Any) -> str:
    if not callable(fn):
        raise TypeError(f"fn must be a function, not {type(fn).__name__}")
    if inspect.ismethod(fn) and not isinstance(fn.__self__, type):
        owner = type(fn.__self__).__name__
        raise TypeError(
            f"cannot send the bound method {owner}.{fn.__name__}: a function travels by "
            f"its import name and the instance it is bound to cannot travel; pass a "
            f"module-level function and the instance's data as arguments"
        )
    qualname = getattr(fn, "__qualname__", None)
    if qualname is None or not isinstance(qualname, str):
        raise TypeError(
            f"cannot send a {type(fn).__name__} object: only functions, classes and "
            f"class or static methods travel by name; {_HOW}"
        )
    if fn.__name__ == "<lambda>":
        raise TypeError(f"cannot send a lambda ({qualname}): it has no import name; {_HOW}")
    if "<locals>" in qualname:
        if getattr(fn, "__closure__", None):
            free = ", ".join(fn.__code__.co_freevars)
            raise TypeError(
                f"cannot send the closure {qualname}: it uses variables of its enclosing "
                f"function ({free}) that cannot travel; {_HOW} and pass them as arguments"
            )
        raise TypeError(f"cannot send the nested function {qualname}: {_HOW}")
    module = getattr(fn, "__module__", None)
    if module is None and hasattr(fn, "__objclass__"):  # str.upper and the like
        module = fn.__objclass__.__module__
    if not module:
        raise TypeError(f"cannot send {qualname}: it names no module; {_HOW}")
    if module == "__main__":
        module = main_module_name()
    return f"{module}:{qualname}"


def main_module_name() -> str:
    """What workers import for a function of ``__main__``: the module ``python -m`` ran,
    else the script's file name (so the script needs ``if __name__ == '__main__':``
    around its work, as with ``multiprocessing``)."""
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        return str(spec.name)
    path: str | None = getattr(main, "__file__", None)
    if not path:
        raise TypeError(
            "cannot send a function defined in an interactive session: workers import "
            f"functions by name; {_HOW}"
        )
    return os.path.splitext(os.path.basename(path))[0]


def _lookup(module: Any, qualname: str) -> Any:
    if module is None:
        return None
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _same(found: Any, fn: Any) -> bool:
    if found is fn:
        return True
    # a classmethod looked up again is a new bound object of the same function
    return bool(getattr(found, "__func__", None) is getattr(fn, "__func__", found))


def check_arguments(name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    """Raise a :class:`TypeError` naming the first argument msgpack cannot carry."""
    if all(type(a) in _SIMPLE for a in args) and all(type(v) in _SIMPLE for v in kwargs.values()):
        return
    for index, value in enumerate(args):
        found = find_unpackable(value)
        if found:
            raise TypeError(_cannot(name, f"argument {index}", found))
    for key, value in kwargs.items():
        if not isinstance(key, str):
            raise TypeError(f"{name}: keyword argument names must be str, not {key!r}")
        found = find_unpackable(value)
        if found:
            raise TypeError(_cannot(name, f"keyword argument {key!r}", found))


def _cannot(name: str, which: str, found: tuple[str, str]) -> str:
    path, kind = found
    where = "" if path == "value" else f" at {path}"
    return (
        f"cannot send {which} of {name}{where}: a {kind} (arguments travel as msgpack, never "
        "pickled: dict, list, tuple, str, bytes, int, float, bool, None, datetime, date, "
        "timedelta)"
    )


def module_allowed(module: str, allowed: Sequence[str]) -> bool:
    """True when ``allowed`` is empty or ``module`` is one of them or inside one."""
    return not allowed or any(module == a or module.startswith(a + ".") for a in allowed)


class Resolver:
    """A worker's side: ``module:qualname`` back to the function (imported once)."""

    def __init__(self, allowed: Sequence[str] = ()) -> None:
        self.allowed = tuple(allowed)
        self._cache: dict[str, Callable[..., Any]] = {}

    def __call__(self, name: str) -> Callable[..., Any]:
        """The function named ``name``; raises ``PermissionError`` outside the allowed
        modules, ``ImportError`` naming the module and the head of ``sys.path``."""
        try:
            return self._cache[name]
        except KeyError:
            pass
        module, sep, qualname = name.partition(":")
        if not sep or not module or not qualname:
            raise ValueError(f"a function name is module:qualname, not {name!r}")
        if not module_allowed(module, self.allowed):
            raise PermissionError(
                f"this worker runs only functions of {', '.join(self.allowed)} "
                f"(--allow-module), not {name}"
            )
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            head = ", ".join(repr(p) for p in sys.path[:4])
            raise ImportError(
                f"worker cannot import module {module!r} for {name}: {exc} "
                f"(the worker's sys.path starts [{head}])",
                name=module,
            ) from None
        try:
            fn = _lookup(mod, qualname)
        except AttributeError:
            raise ImportError(
                f"worker imported module {module!r} but it has no {qualname!r} (for {name})",
                name=module,
            ) from None
        self._cache[name] = fn
        return fn  # type: ignore[no-any-return]
