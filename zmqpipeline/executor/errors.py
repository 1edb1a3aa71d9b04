"""An exception raised by a function on a worker, carried back to the caller.

The worker describes it (:func:`describe`: type name, module, message, traceback text);
the caller rebuilds it (:func:`rebuild`): a built-in exception type is raised as that same
type with the same message (the remote traceback is its ``__cause__``'s text); any other
type becomes a :class:`RemoteError` carrying the remote type's name, message and
traceback text. Nothing is unpickled: only these strings travel.
"""

from __future__ import annotations

import builtins
import traceback
from typing import Any

from ..errors import ZmqPipelineError

__all__ = ["RemoteError", "RemoteTraceback", "describe", "from_failure_text", "rebuild"]


class RemoteError(ZmqPipelineError):
    """A function raised an exception of a type that is not built in, on a worker.

    ``type_name`` is its qualified type (``module.Class``), ``message`` its ``str()``,
    ``remote_traceback`` the worker's formatted traceback."""

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type_name, self.message, self.remote_traceback))


class RemoteTraceback(Exception):
    """The ``__cause__`` of a rebuilt exception: its text is the worker's traceback."""

    def __str__(self) -> str:
        return "\n\n" + str(self.args[0]) if self.args else ""


def describe(exc: BaseException) -> dict[str, Any]:
    """What travels of ``exc``: ``type`` (``module.Qualname``, bare for built-ins),
    ``message``, ``args`` (when they are plain values) and ``traceback``."""
    cls = type(exc)
    module = cls.__module__
    name = cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
    simple = all(type(a) in (str, int, float, bool, type(None)) for a in exc.args)
    return {
        "type": name,
        "message": str(exc),
        "args": list(exc.args) if simple else [str(exc)],
        "traceback": "".join(traceback.format_exception(exc)),
    }


def rebuild(desc: dict[str, Any]) -> BaseException:
    """The exception ``future.result()`` raises for ``desc`` (see the module's text)."""
    name = str(desc.get("type", "Exception"))
    message = str(desc.get("message", ""))
    text = str(desc.get("traceback", ""))
    cls = getattr(builtins, name, None) if "." not in name else None
    exc: BaseException
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            exc = cls(*desc.get("args", [message]))
        except Exception:  # a built-in whose constructor wants more (UnicodeError's kin)
            exc = RemoteError(name, message, text)
        else:
            if text:
                exc.__cause__ = RemoteTraceback(text)
            return exc
    return RemoteError(name, message, text)


def from_failure_text(text: str) -> BaseException:
    """An item the run failed for good (its worker died too often, or its retries ran
    out): rebuilt from the traceback text the distributor kept."""
    lines = text.strip().splitlines()
    last = lines[-1] if lines else "RemoteError: the call failed"
    name, sep, message = last.partition(": ")
    if not sep or " " in name:
        name, message = "RemoteError", last
    if name == "RemoteError":
        return RemoteError("zmqpipeline.RemoteError", message, text)
    return rebuild({"type": name, "message": message, "traceback": text})
