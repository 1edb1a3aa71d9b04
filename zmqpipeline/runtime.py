"""What every role's ``run()`` shares: :class:`RoleRuntime` owns the zmq context, the stop
signal (SIGINT/SIGTERM), the sockets and the drop counter, sends without ever blocking
forever, and closes everything in order; :func:`call_user` is the one guard around every
call into user code."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import zmq

from .security import Security
from .settings import Settings
from .task import check_class_attributes
from .transport import DropCounter, StopSignal, close_sockets, new_context, open_socket

__all__ = ["Role", "RoleRuntime", "UserCodeError", "call_user"]

T = TypeVar("T")


class UserCodeError(Exception):
    """User code raised; ``text`` is the formatted traceback, ``exc`` the exception."""

    def __init__(self, exc: BaseException, text: str) -> None:
        super().__init__(text)
        self.exc = exc
        self.text = text

    @property
    def exc_types(self) -> list[str]:
        """Names of the exception's classes, most specific first (for retry policies)."""
        return [cls.__name__ for cls in type(self.exc).__mro__ if cls is not object]


def call_user(
    logger: logging.Logger,
    what: str,
    fn: Callable[..., T],
    *args: Any,
    item: tuple[str, int] | str = "",
) -> T:
    """Call ``fn(*args)``; if it raises, log the traceback at ERROR naming ``what`` and the
    item (``(task_type, seq)``, formatted only then: this is on every item's path), and
    raise :class:`UserCodeError` for the caller to turn into the documented outcome (a
    retry, a failed item, an error reply). Nothing a user callback raises escapes a role's
    loop any other way."""
    try:
        return fn(*args)
    except Exception as exc:
        text = traceback.format_exc()
        name = "/".join(map(str, item)) if isinstance(item, tuple) else item
        logger.error("%s raised%s:\n%s", what, f" on item {name}" if name else "", text)
        raise UserCodeError(exc, text) from None


class Role:
    """What every role a user subclasses shares: its class is checked when defined
    (attribute types, typos, required methods), its ``required`` class attributes when it
    is made, and it holds its :class:`Settings`."""

    #: CURVE keys for this role's tcp sockets (``None``: the ``ZMQPIPELINE_CURVE_*``
    #: environment variables, or no security). See docs/security.md.
    security: ClassVar[Security | None] = None
    #: Class attributes a role cannot run without.
    required: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_class_attributes(cls, cls.__name__)

    def __init__(self, *, settings: Settings | None = None) -> None:
        for name in self.required:
            if getattr(self, name, None) is None:
                raise TypeError(f"{type(self).__name__} has no {name}")
        self.settings = settings or Settings.from_env(security=self.security)


class RoleRuntime:
    """A role's context, stop signal and sockets, as a context manager.

    ``with RoleRuntime("collector", settings, logger) as rt:`` opens sockets with
    :meth:`open`; on leaving, every socket is closed (ipc files removed), the context
    terminated, the signal handlers restored and the dropped messages reported.
    """

    def __init__(self, name: str, settings: Settings, logger: logging.Logger) -> None:
        self.name = name
        self.settings = settings
        self.logger = logger
        self.drops = DropCounter(logger, name)
        self.ctx = new_context()
        self.stop = StopSignal()
        self.sockets: list[zmq.Socket[Any]] = []

    def __enter__(self) -> RoleRuntime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(
        self,
        socket_type: int,
        endpoint: str,
        *,
        bind: bool,
        identity: bytes | None = None,
        admit: str = "workers",
        max_bytes: int | None = None,
    ) -> zmq.Socket[Any]:
        """A socket bound or connected to ``endpoint``, closed with the runtime. A bound
        one admits (under CURVE) only keys of role ``admit``; ``max_bytes`` caps each
        frame it takes (default: ``max_message_bytes``)."""
        sock = open_socket(
            self.ctx,
            socket_type,
            endpoint,
            bind=bind,
            settings=self.settings,
            identity=identity,
            role=self.name,
            admit=admit,
            max_bytes=max_bytes,
        )
        self.sockets.append(sock)
        return sock

    def send(
        self, sock: zmq.Socket[Any], frames: list[bytes], timeout_s: float | None = None
    ) -> bool:
        """Send ``frames``, waiting while the socket cannot take them (no peer yet, a full
        queue) but never past a stop request or ``timeout_s``: ``False`` if not sent."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                sock.send_multipart(frames, zmq.NOBLOCK)
                return True
            except zmq.Again:
                pass
            if self.stop.is_set:
                return False
            wait_ms = 100
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                wait_ms = max(1, min(wait_ms, int(left * 1000)))
            sock.poll(wait_ms, zmq.POLLOUT)

    def close(self) -> None:
        close_sockets(self.sockets)
        self.sockets.clear()
        self.ctx.term()
        self.stop.close()
        self.drops.report()
