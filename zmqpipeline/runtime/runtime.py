"""What every role's ``run()`` shares: :class:`RoleRuntime` owns the zmq context, the stop
signal (SIGINT/SIGTERM), the sockets and the drop counter, sends without ever blocking
forever, and closes everything in order; :func:`call_user` is the one guard around every
call into user code."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import zmq

from .. import protocol
from ..errors import ConfigurationError, MessageTooLarge, ProtocolError
from ..security import Security
from ..settings import Settings
from ..types import EndpointAddress
from .checks import check_class_attributes
from .handshake import HandshakeWatch
from .transport import (
    DropCounter,
    StopSignal,
    close_sockets,
    heartbeat,
    new_context,
    open_socket,
    recv_request,
    send_frames,
)

__all__ = [
    "DRAIN",
    "RequestClient",
    "Role",
    "RoleRuntime",
    "UserCodeError",
    "call_user",
    "serve_requests",
]

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
        raise user_code_error(logger, what, exc, item) from None


def user_code_error(
    logger: logging.Logger, what: str, exc: Exception, item: tuple[str, int] | str = ""
) -> UserCodeError:
    """What :func:`call_user` does when user code raised ``exc`` (call it in the
    ``except`` block: the traceback is the one being handled): log it, and return the
    :class:`UserCodeError` for the caller. For the one loop that calls user code
    directly, a worker's items, where one frame less per item counts."""
    text = traceback.format_exc()
    name = "/".join(map(str, item)) if isinstance(item, tuple) else item
    if getattr(exc, "steers_job", False):  # StopJob, UnsetJob: an outcome, not an error
        text = f"{type(exc).__name__}: {exc}"
        logger.info("%s raised%s: %s", what, f" on item {name}" if name else "", text)
        return UserCodeError(exc, text)
    logger.error("%s raised%s:\n%s", what, f" on item {name}" if name else "", text)
    return UserCodeError(exc, text)


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

    def __init__(
        self, name: str, settings: Settings, logger: logging.Logger, signals: bool = True
    ) -> None:
        self.name = name
        self.settings = settings
        self.logger = logger
        self.drops = DropCounter(logger, name)
        self.ctx = new_context()
        #: SIGINT/SIGTERM as a flag and a pollable fd (handlers installed with ``signals``).
        self.stop = StopSignal(install=signals)
        self.sockets: list[zmq.Socket[Any]] = []
        self._beat: threading.Thread | None = None
        self._beat_stop = threading.Event()
        self._handshakes: HandshakeWatch | None = None

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
        if endpoint.startswith("inproc://"):
            raise ConfigurationError(
                f"{self.name}: {endpoint} cannot work: inproc:// joins the sockets of one "
                "ZeroMQ context, and every zmqpipeline role has its own, also in one "
                "process; use ipc:// between the roles of one machine"
            )
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
            watch=self._watch,
        )
        self.sockets.append(sock)
        return sock

    def _watch(self, sock: zmq.Socket[Any], endpoint: str) -> None:
        """A connecting CURVE socket: say why its handshake fails, if it does."""
        security = self.settings.security
        if security is None:
            return
        if self._handshakes is None:
            self._handshakes = HandshakeWatch(self.name, security, self.logger)
        self._handshakes.watch(sock, endpoint)

    def send(
        self, sock: zmq.Socket[Any], frames: list[bytes], timeout_s: float | None = None
    ) -> bool:
        """Send ``frames``, waiting while the socket cannot take them (no peer yet, a full
        queue) but never past a stop request or ``timeout_s``: ``False`` if not sent."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                send_frames(sock, frames)
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

    def start_heartbeat(self, endpoint: str, worker_id: bytes) -> None:
        """Beat for ``worker_id`` at ``endpoint`` from a thread of its own (user code may
        run long in the main thread) until the runtime closes."""
        self._beat = threading.Thread(
            target=heartbeat,
            name="zmqpipeline-heartbeat",
            daemon=True,
            args=(self.ctx, endpoint, worker_id, self.settings, self._beat_stop),
        )
        self._beat.start()

    def await_reply(
        self, sock: zmq.Socket[Any], kind: int, request_id: int, timeout_s: float, where: str
    ) -> Any:
        """The reply of ``kind`` to ``request_id`` on ``sock`` (a record), or ``None`` after
        ``timeout_s`` or a stop request (Ctrl-C ends the wait); other messages are dropped,
        a malformed one with a log line."""
        deadline = time.monotonic() + timeout_s
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self.stop.fd, zmq.POLLIN)
        while (left := deadline - time.monotonic()) > 0 and not self.stop.is_set:
            if sock not in dict(poller.poll(max(1, int(left * 1000)))):
                continue
            try:
                msg = protocol.decode(sock.recv_multipart(), {kind}, where)
            except ProtocolError as exc:
                self.logger.warning("dropped a bad reply %s: %s", where, exc.reason)
                continue
            if msg.request_id == request_id:
                return msg
        return None

    def close(self) -> None:
        self._beat_stop.set()
        if self._beat is not None:
            self._beat.join()
        if self._handshakes is not None:
            self._handshakes.close(self.sockets)
        close_sockets(self.sockets)
        self.sockets.clear()
        self.ctx.term()
        self.stop.close()
        self.drops.report()


#: Messages read from one socket before the role's other sockets get a turn.
DRAIN = 1000


def serve_requests(
    rt: RoleRuntime,
    sock: zmq.Socket[Any],
    accept: frozenset[int],
    name: str,
    answer: Callable[[Any, bytes, zmq.Frame], list[bytes]],
    max_bytes: int = 1 << 62,
) -> None:
    """Answer every request waiting on a ROUTER (the control and the push endpoints): each
    at once, with the frames ``answer(record, identity, last frame)`` builds (the last frame
    carries the peer's metadata: who sent it). Garbage is dropped and counted
    (``<name>: ...``); a request whose answer raises is logged and goes unanswered (the
    role goes on); a reply that cannot leave is forgotten (the peer asks again)."""
    for _ in range(DRAIN):
        try:
            read = recv_request(sock)
            if read is None:
                return
            frames, last = read
            if len(frames) != 3:
                raise ProtocolError("expected 3 frames", frames, "frame count")
            msg = protocol.decode(frames[1:], accept, f"at the {name} endpoint", max_bytes)
        except ProtocolError as exc:
            rt.drops.drop(f"{name}: {exc.category}", f"{exc.reason} on {name}")
            continue
        try:
            reply = answer(msg, frames[0], last)
        except Exception:  # one bad request never ends the role
            rt.logger.exception("%s: answering a %s request failed", rt.name, name)
            continue
        try:
            send_frames(sock, reply, to=frames[0])
        except (zmq.ZMQError, MessageTooLarge):
            pass  # the peer has gone, or the reply is too big: it asks again


class RequestClient:
    """What the operator's and the pusher's clients share: an endpoint, a timeout per
    reply, settings (CURVE from ``security`` or the ``ZMQPIPELINE_CURVE_*`` variables),
    and waiting for the reply of kind :attr:`reply_kind` to a request."""

    reply_kind: ClassVar[int]
    #: Raised when no reply comes, or the request is refused.
    error: ClassVar[type[Exception]]
    #: Why a reply may not come, for the error: "no distributor there, or ...".
    no_reply_hint: ClassVar[str]
    #: Seconds to wait for each reply, unless ``timeout`` says otherwise.
    default_timeout_s: ClassVar[float] = 3.0

    def __init__(
        self,
        endpoint: str,
        security: Security | None = None,
        *,
        timeout: float | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.endpoint = EndpointAddress(endpoint)
        self.timeout = float(self.default_timeout_s if timeout is None else timeout)
        self.settings = settings or Settings.from_env(security=security)
        self._codec = protocol.Codec(self.settings.max_message_bytes)

    def _exchange(
        self, rt: RoleRuntime, sock: zmq.Socket[Any], request_id: int, frames: list[bytes]
    ) -> Any:
        """Send a request and return its reply; no reply in time raises :attr:`error`,
        Ctrl-C while waiting ``KeyboardInterrupt``."""
        sock.send_multipart(frames, zmq.NOBLOCK)  # DEALER queues until connected
        reply = rt.await_reply(
            sock, self.reply_kind, request_id, self.timeout, f"from {self.endpoint}"
        )
        if rt.stop.is_set:
            raise KeyboardInterrupt
        if reply is None:
            raise self.error(
                f"no reply from {self.endpoint} within {self.timeout:g} s ({self.no_reply_hint})"
            )
        return reply
