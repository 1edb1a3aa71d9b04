"""Socket set-up shared by every role: one place that creates, binds and connects.

Security lives here too: with ``settings.security`` set, every tcp socket is CURVE-encrypted
(binding sockets as servers whose clients a ZAP authenticator checks, connecting sockets as
clients); ipc files are made 0600 in a 0700 directory. See :mod:`zmqpipeline.security`.

Also the two small pieces of plumbing every ``run()`` loop uses: :class:`StopSignal`
(SIGINT/SIGTERM as a pollable event) and :class:`DropCounter` (bad input is counted and
logged once per reason, so a flood of garbage cannot flood the log).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import weakref
from collections import Counter
from collections.abc import Callable
from types import FrameType
from typing import Any

import zmq

from .. import protocol
from ..errors import ConfigurationError, ProtocolError
from ..security import KeyPolicy, Security, start_authenticator
from ..settings import Settings
from ..types import EndpointAddress

__all__ = [
    "NOBLOCK",
    "DropCounter",
    "RoleContext",
    "StopSignal",
    "close_sockets",
    "heartbeat",
    "new_context",
    "open_socket",
    "recv_frames",
    "recv_request",
    "send_frames",
]


# ipc files this process bound, removed when their socket is closed (libzmq leaves them).
_bound_ipc_files: weakref.WeakKeyDictionary[zmq.Socket[Any], str] = weakref.WeakKeyDictionary()


_auth_lock = threading.Lock()


class RoleContext(zmq.Context[zmq.Socket[Any]]):
    """A role's context. Also owns the role's ZAP authenticator (a thread started by the
    first CURVE-secured bind), which :meth:`term` and :meth:`destroy` stop first: a role
    that closes its context leaves no thread behind."""

    _authenticator: Any = None
    _key_policy: KeyPolicy | None = None

    def admit(self, security: Security) -> None:
        """Make sure our authenticator runs and admits ``security``'s client keys."""
        with _auth_lock:
            if self._key_policy is None:
                self._authenticator, self._key_policy = start_authenticator(self)
            self._key_policy.add(security)

    def stop_authenticator(self) -> None:
        with _auth_lock:
            auth, self._authenticator, self._key_policy = self._authenticator, None, None
        if auth is not None:
            auth.stop()

    def term(self) -> None:
        self.stop_authenticator()
        super().term()

    def destroy(self, linger: int | None = None) -> None:
        self.stop_authenticator()
        super().destroy(linger)


RECONNECT_IVL_MS = 10
RECONNECT_IVL_MAX_MS = 100


def new_context() -> RoleContext:
    """A fresh context for one role (never the global instance: roles may share a process)."""
    return RoleContext()


def open_socket(
    ctx: zmq.Context[Any],
    socket_type: int,
    endpoint: str,
    *,
    bind: bool,
    settings: Settings,
    identity: bytes | None = None,
    role: str = "",
    admit: str = "workers",
    max_bytes: int | None = None,
    watch: Callable[[zmq.Socket[Any], str], None] | None = None,
) -> zmq.Socket[Any]:
    """Create a socket of ``socket_type`` and bind or connect it to ``endpoint``.

    Every socket gets the message size limit and a bounded linger, so closing never hangs.
    With ``settings.security`` set, a tcp socket is CURVE-secured before it binds (server;
    the context's ZAP authenticator is running before anyone can connect) or connects
    (client). A bound ipc file is made 0600; a directory created for it, 0700.
    """
    address = EndpointAddress(endpoint)
    sock: zmq.Socket[Any] = ctx.socket(socket_type)
    try:
        sock.setsockopt(zmq.LINGER, settings.linger_ms)
        sock.setsockopt(zmq.MAXMSGSIZE, max_bytes or settings.max_message_bytes)
        if identity is not None:
            sock.setsockopt(zmq.IDENTITY, identity)
        if not bind:
            # Retry a connection to a peer that is not up yet after 10 ms, doubling up to
            # 100 ms (libzmq's default is a flat 100 ms): roles may start in any order.
            sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
        if socket_type == zmq.ROUTER:
            # A send to a peer that has gone raises instead of vanishing silently,
            # and a worker that reconnects under the same identity takes it over.
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        if settings.security is not None and address.scheme == "tcp":
            _secure(ctx, sock, address, settings.security, bind, role or "role", admit, watch)
        if bind:
            _bind(sock, address, role or "role")
        else:
            try:
                sock.connect(address)
            except zmq.ZMQError as exc:
                raise ConfigurationError(
                    f"{role or 'role'} cannot connect to {address}: {exc.strerror}"
                ) from None
    except BaseException:
        sock.close(linger=0)
        raise
    return sock


def _secure(
    ctx: zmq.Context[Any],
    sock: zmq.Socket[Any],
    address: EndpointAddress,
    security: Security,
    bind: bool,
    role: str,
    admit: str,
    watch: Callable[[zmq.Socket[Any], str], None] | None,
) -> None:
    """Make ``sock`` a CURVE client, or a server admitting role ``admit``."""
    if not bind:
        security.make_client(sock, address, role)
        if watch is not None:  # before connecting: the first handshake is the one to see
            watch(sock, address)
    elif isinstance(ctx, RoleContext):
        security.make_server(sock, address, role, admit)
        ctx.admit(security)
    else:  # a bare zmq.Context could not stop the authenticator before term()
        raise ConfigurationError(f"{role} binds {address} with CURVE: use transport.new_context()")


def recv_request(sock: zmq.Socket[Any]) -> tuple[list[bytes], zmq.Frame] | None:
    """One request of at most 3 frames, and its last frame (which carries the peer's
    metadata); ``None`` if none waits. A longer one is read to its end and refused."""
    try:
        frame = sock.recv(zmq.NOBLOCK, copy=False)
    except zmq.Again:
        return None
    frames = [frame.bytes]
    while frame.more:
        frame = sock.recv(0, copy=False)
        if len(frames) < 3:
            frames.append(frame.bytes)
            continue
        while frame.more:
            frame = sock.recv(0, copy=False)
        raise ProtocolError("message of more than 3 frames", [], "frame count")
    return frames, frame


def _bind(sock: zmq.Socket[Any], address: EndpointAddress, role: str) -> None:
    """Bind ``sock``; an ipc file gets a private directory, mode 0600, and is refused if a
    live process serves it already."""
    if address.scheme == "ipc":
        directory = os.path.dirname(address.location)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        _refuse_live_ipc(address, role)
    try:
        sock.bind(address)
    except zmq.ZMQError as exc:
        raise ConfigurationError(f"{role} cannot bind {address}: {exc.strerror}") from None
    if address.scheme == "ipc":
        _bound_ipc_files[sock] = address.location
        if not address.location.startswith("@"):  # "@name": abstract, no file
            os.chmod(address.location, 0o600)


def _refuse_live_ipc(address: EndpointAddress, role: str) -> None:
    """Binding an ipc path takes it over silently from whoever serves it: refuse if a
    live process answers there (a second distributor started by mistake); a file left by
    a dead process is replaced."""
    path = address.location
    if path.startswith("@") or not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return  # nobody listens: a stale file, which bind replaces
    finally:
        probe.close()
    raise ConfigurationError(
        f"{role} cannot bind {address}: another live process is serving it "
        "(a second distributor or collector on the same address?)"
    )


# Plain ints: pyzmq's enum members cost an enum construction per ``&`` on every read.
_EVENTS, _POLLIN, _RCVMORE, NOBLOCK, _SNDMORE = (
    int(zmq.EVENTS),
    int(zmq.POLLIN),
    int(zmq.RCVMORE),
    int(zmq.NOBLOCK),
    int(zmq.SNDMORE),
)

# pyzmq's socket methods under its convenience layer, for every message's path. Its
# ``send_multipart`` checks each frame's type and builds ``SNDMORE | flags`` as an enum
# per frame, and asking RCVMORE after each frame read builds an enum too: about 6 us for
# one two-frame message sent and read (warm; several times that on a core that has just
# woken), against 1.7 us for the same libzmq calls made here (timeit, inproc).
_send: Any = zmq.backend.Socket.send  # (data, flags, copy): copy=False for big values
_recv = zmq.backend.Socket.recv


def send_frames(
    sock: zmq.Socket[Any], frames: list[bytes], to: bytes | None = None, flags: int = NOBLOCK
) -> None:
    """Send ``frames`` as one message, without blocking by default (``zmq.Again`` if the
    peer cannot take it now: then nothing was sent). ``to``: a ROUTER's peer, sent first."""
    more = flags | _SNDMORE
    if to is not None:
        _send(sock, to, more)
    last = len(frames) - 1
    for i in range(last):
        _send(sock, frames[i], more, i < 2)  # big values after the body: without a copy
    _send(sock, frames[last], flags, last < 2)


def readable(sock: zmq.Socket[Any]) -> bool:
    """A message waits on ``sock`` (asked without raising, unlike a read of nothing)."""
    events: int = sock.getsockopt(_EVENTS)  # type: ignore[assignment]
    return bool(events & _POLLIN)


def recv_frames(
    sock: zmq.Socket[Any], max_frames: int, waiting: bool = False, buffers_from: int = 1 << 30
) -> list[bytes] | None:
    """Receive one message without blocking (``None`` if there is none). A message of
    more than ``max_frames`` frames is read to its end without keeping it, and refused
    with a ``ProtocolError``: no peer can make a role hold a message of many parts.
    ``waiting``: a poll has just said a message waits, so it is read without asking.
    Frames from number ``buffers_from`` on (big values after a body) are not copied: they
    come as ``memoryview`` s of the received frames."""
    # Asking first is cheaper than the zmq.Again a read of nothing raises: a raised
    # exception costs a role tens of microseconds each time its loop drains a socket.
    # (The question is a system call too: not asked again when a poll has answered it.)
    if not waiting and not readable(sock):
        return None
    try:
        frame = _recv(sock, NOBLOCK, False)  # a Frame: it says whether more follow
    except zmq.Again:
        return None
    frames: list[Any] = [frame.bytes]
    while frame.more:
        frame = _recv(sock, 0, False)
        if len(frames) < max_frames:
            frames.append(frame.bytes if len(frames) < buffers_from else frame.buffer)
            continue
        while frame.more:  # counted, not kept
            frame = _recv(sock, 0, False)
        raise ProtocolError(f"message of more than {max_frames} frames", [], "frame count")
    return frames


def close_sockets(sockets: list[zmq.Socket[Any]]) -> None:
    """Close ``sockets`` and remove the ipc files they bound."""
    for sock in sockets:
        path = _bound_ipc_files.pop(sock, None)
        sock.close()
        if path is not None:
            try:
                os.unlink(path)
            except OSError:
                pass


def heartbeat(
    ctx: zmq.Context[Any], endpoint: str, wid: bytes, settings: Settings, stopped: threading.Event
) -> None:
    """Thread target: tell the peer at ``endpoint`` that ``wid`` is alive every interval,
    from a socket of its own, whatever the main thread is doing (user code may run long)."""
    sock = open_socket(ctx, zmq.DEALER, endpoint, bind=False, settings=settings, role="heartbeat")
    sock.setsockopt(zmq.SNDHWM, 2)  # an unreachable peer needs no backlog of beats
    frames = protocol.Codec(settings.max_message_bytes).heartbeat(wid)
    try:
        while not stopped.wait(settings.heartbeat_interval_s):
            try:
                send_frames(sock, frames)
            except zmq.Again:
                pass
    finally:
        sock.close(linger=0)


#: Every open stop signal of this process: a signal reaches the roles of every thread.
_OPEN_SIGNALS: set[StopSignal] = set()


class StopSignal:
    """SIGINT/SIGTERM turned into a flag plus a readable fd for the poller.

    Installed only when constructed in the main thread (signal handlers live there) and
    ``install`` is true; else :attr:`fd` is still pollable and :meth:`set` stops the loop.
    """

    def __init__(self, install: bool = True) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        os.set_blocking(self._read_fd, False)
        self.is_set = False
        self.signum: int | None = None
        self.count = 0  # signals received: a second one may mean "now"
        self._previous: dict[int, Any] = {}
        _OPEN_SIGNALS.add(self)
        if install and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)

    @property
    def fd(self) -> int:
        return self._read_fd

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Roles started in other threads of this process installed no handler: they stop
        # with this one (else the process would wait for them for ever).
        for stop in list(_OPEN_SIGNALS):
            stop.signum = signum
            stop.count += 1
            stop.set()

    def set(self) -> None:
        self.is_set = True
        try:
            os.write(self._write_fd, b"\0")
        except (BlockingIOError, OSError):
            pass

    def drain(self) -> None:
        """Empty :attr:`fd` (the flag stays set): a loop that goes on after a first signal
        polls it again only for the next one."""
        try:
            while os.read(self._read_fd, 64):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        _OPEN_SIGNALS.discard(self)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        os.close(self._read_fd)
        os.close(self._write_fd)


# A forked child's signals are its own: it must not set the stop signals of its parent's
# roles (the pipes are shared across the fork).
os.register_at_fork(after_in_child=_OPEN_SIGNALS.clear)


class DropCounter:
    """Counts dropped messages by reason; logs the first of each reason only."""

    def __init__(self, logger: logging.Logger, where: str) -> None:
        self._logger = logger
        self._where = where
        self.counts: Counter[str] = Counter()

    def drop(self, reason: str, detail: str = "") -> None:
        self.counts[reason] += 1
        if self.counts[reason] == 1:
            self._logger.warning(
                "%s: dropped a message (%s%s); further drops of this kind are only counted",
                self._where,
                reason,
                f": {detail}" if detail else "",
            )

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def report(self) -> None:
        if self.counts:
            self._logger.warning(
                "%s: dropped %d bad message(s): %s",
                self._where,
                self.total,
                ", ".join(f"{reason} x{n}" for reason, n in sorted(self.counts.items())),
            )
