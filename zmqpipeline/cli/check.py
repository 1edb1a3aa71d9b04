"""``zmqpipeline check ENDPOINT``: can this host's workers work with that endpoint?

Run from a worker host, it answers in seconds, in three steps, each bounded by what is
left of ``--timeout``:

1. **TCP** (a plain socket, to see the kernel's error): *no route* (the network or host is
   unreachable, or the name does not resolve), *refused* (nothing listens there, or a
   firewall rejects), *silent* (no answer to the connect: a firewall dropping packets, a
   host that is down).
2. **ZeroMQ handshake** (a socket monitor sees its outcome): *key refused* (the endpoint's
   ZAP authenticator refused this host's CURVE key, or the two sides disagree on CURVE),
   *silent* (the connection is accepted but no handshake comes: not ZeroMQ, or the
   process is stopped).
3. **Our protocol** (a distributor's task endpoint): one HEARTBEAT under an identity no
   worker has; a distributor answers an unknown worker with RESET, and a message of
   another protocol version with a RESET of its own version. *wrong version* (the answer's
   version byte is not ours, or the socket's type takes no worker), *silent* (no answer).

A collector's endpoint (``--collector``) never answers, so its check ends after step 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]
import zmq

from .._version import __version__
from ..errors import UsageError
from ..protocol import HEARTBEAT, KIND_NAMES, VERSION
from ..runtime.handshake import HANDSHAKE_END, closed_in_handshake, handshake_failure
from ..security import (
    ENV_AUTHORIZED_KEYS,
    ENV_SECRET_KEY,
    ENV_SERVER_KEY,
    Security,
)
from ..types import EndpointAddress
from .args import add_command

__all__ = ["CAUSES", "Verdict", "add_check_command", "check_endpoint"]

#: The answers, "ok" first; the others name what is wrong.
CAUSES = ("ok", "no route", "refused", "silent", "wrong version", "key refused")

_NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EHOSTDOWN}
_DEFAULT_TIMEOUT_S = 3.0
#: After the peer closed the connection, how long to wait for the event saying why.
_WHY_CLOSED_S = 1.0
#: Our socket's identity: no worker's (theirs are host:pid:random).
_IDENTITY = f"zmqpipeline-check:{socket.gethostname()}:{os.getpid()}".encode()


@dataclass(frozen=True)
class Verdict:
    """What :func:`check_endpoint` found: ``cause`` is one of :data:`CAUSES`."""

    endpoint: str
    cause: str
    detail: str
    seconds: float

    @property
    def ok(self) -> bool:
        """True if workers of this host can work with the endpoint."""
        return self.cause == "ok"

    def line(self) -> str:
        """The one line ``zmqpipeline check`` prints."""
        return f"{self.endpoint}: {self.cause.upper()} - {self.detail} ({self.seconds:.2f} s)"


class _Found(Exception):
    """A step's outcome other than "go on"."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(detail)
        self.cause, self.detail = cause, detail


def check_endpoint(
    endpoint: str,
    *,
    security: Security | None = None,
    timeout_s: float = _DEFAULT_TIMEOUT_S,
    collector: bool = False,
    version: int = VERSION,
) -> Verdict:
    """Check ``endpoint`` as a worker of this host would use it (see the module's text).

    ``security``: this host's CURVE configuration (a worker's: its key pair and the
    server's key), ``None`` for plain tcp. ``collector``: the endpoint is a collector's
    (results go there; it never answers). ``version``: the protocol version to speak
    (the default is this release's; another shows what a worker of that release meets).
    """
    address = EndpointAddress(endpoint)
    if address.scheme == "inproc":
        raise UsageError(f"{endpoint}: inproc endpoints live inside one process; nothing to check")
    started = time.monotonic()
    deadline = started + timeout_s
    try:
        if address.scheme == "tcp":
            _tcp_step(address, deadline)
        elif not os.path.exists(address.partition("://")[2]):
            raise _Found("refused", "no such ipc socket file: is the role running on this host?")
        detail = _zmq_steps(address, security, deadline, collector, version)
        cause = "ok"
    except _Found as found:
        cause, detail = found.cause, found.detail
    return Verdict(str(address), cause, detail, time.monotonic() - started)


def _tcp_step(address: str, deadline: float) -> None:
    host, _, port = address.partition("://")[2].rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise _Found("no route", f"cannot resolve host name {host!r} ({exc.strerror})") from None
    family, kind, proto, _, where = infos[0]
    plain = socket.socket(family, kind, proto)
    plain.settimeout(max(0.05, deadline - time.monotonic()))
    try:
        plain.connect(where)
    except TimeoutError:
        raise _Found(
            "silent",
            f"no answer to a TCP connect to {where[0]} port {port} in time: a firewall "
            "drops the packets, or the host is down",
        ) from None
    except OSError as exc:
        raise _tcp_error(exc, str(where[0]), port) from None
    finally:
        plain.close()


def _tcp_error(exc: OSError, ip: str, port: str) -> _Found:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ECONNREFUSED:
        return _Found(
            "refused",
            f"nothing listens on {ip} port {port} (connection refused): is the role running, "
            "bound to this address and port (tcp://localhost binds loopback only), "
            "and does no firewall reject it?",
        )
    if exc.errno in _NO_ROUTE:
        return _Found(
            "no route",
            f"no route to {ip} ({reason}): this host cannot reach that address; use the "
            "address of an interface the workers' network reaches",
        )
    return _Found("refused", f"TCP connect to {ip} port {port} failed: {reason}")


def _zmq_steps(
    address: str, security: Security | None, deadline: float, collector: bool, version: int
) -> str:
    ctx: zmq.Context[Any] = zmq.Context()
    sock = ctx.socket(zmq.PUSH if collector else zmq.DEALER)
    monitor = sock.get_monitor_socket()
    try:
        sock.setsockopt(zmq.LINGER, 0)
        # The distributor answers a heartbeat to the identity it names: our socket's own.
        sock.setsockopt(zmq.IDENTITY, _IDENTITY)
        if security is not None and address.startswith("tcp://"):
            security.make_client(sock, address, "check")
        sock.connect(address)
        _handshake(monitor, security, deadline, address.startswith("tcp://"))
        keyed = "CURVE key accepted" if security is not None else "plain tcp (no CURVE)"
        if collector:
            return (
                f"reachable, {keyed} (a collector never answers: the protocol version is "
                "checked at the distributor's endpoint)"
            )
        return _protocol_step(sock, deadline, version) + f", {keyed}"
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)
        ctx.term()


def _handshake(monitor: Any, security: Security | None, deadline: float, tcp: bool) -> None:
    from zmq.utils.monitor import recv_monitor_message  # (asyncio: for this command only)

    curve = security is not None and tcp
    closed = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not monitor.poll(max(1, int(left * 1000))):
            if closed:  # and no event said why: the peer closed in the handshake
                raise _Found(*closed_in_handshake(curve, tcp))
            raise _Found(
                "silent",
                "connected, but no ZeroMQ handshake came: not a ZeroMQ socket, a stopped "
                "process, or a peer that drops our CURVE hello",
            )
        event = recv_monitor_message(monitor)
        kind, value = event["event"], event["value"]
        if kind == zmq.EVENT_DISCONNECTED and not closed:
            # libzmq does not retry a refused handshake; the event saying why may come
            # just after this one
            closed = True
            deadline = min(deadline, time.monotonic() + _WHY_CLOSED_S)
        if kind not in HANDSHAKE_END:
            continue
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            return
        if kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:  # the peer closed (value: errno):
            closed = True  # the event saying why (a mechanism mismatch...) may follow
            deadline = min(deadline, time.monotonic() + _WHY_CLOSED_S)
            continue
        raise _Found(*handshake_failure(kind, value, security))


def _protocol_step(sock: Any, deadline: float, version: int) -> str:
    sock.send_multipart([bytes((version, HEARTBEAT)), msgpack.packb([_IDENTITY])])
    left = deadline - time.monotonic()
    if left <= 0 or not sock.poll(max(1, int(left * 1000))):
        raise _Found(
            "silent",
            "connected, but no answer to a heartbeat: not a distributor's task endpoint, "
            "a busy or stopped distributor, or a zmqpipeline release that does not answer "
            f"other protocol versions (this one speaks {version})",
        )
    frames = sock.recv_multipart()
    header = frames[0] if frames else b""
    if len(header) != 2:
        raise _Found("wrong version", "the answer is not a zmqpipeline message")
    if header[0] != version:
        raise _Found(
            "wrong version",
            f"the endpoint speaks protocol version {header[0]}, this host speaks {version} "
            f"(zmqpipeline {__version__}): install the same release on both sides",
        )
    kind = KIND_NAMES.get(header[1], f"0x{header[1]:02x}")
    return f"a distributor answers ({kind}), protocol version {version}"


# -- the command --------------------------------------------------------------------------


def add_check_command(subparsers: Any) -> None:
    """Add ``check`` to the ``zmqpipeline`` parser's subcommands."""
    check = add_command(subparsers, "check", _cmd_check)
    check.add_argument("endpoint", metavar="ENDPOINT", help="e.g. tcp://node01:5555")
    check.add_argument(
        "-t",
        "--timeout",
        type=float,
        default=_DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds for the whole check (default {_DEFAULT_TIMEOUT_S:g})",
    )
    check.add_argument(
        "--collector",
        action="store_true",
        help="ENDPOINT is a collector's (where results go): it never answers, so the "
        "check ends with the handshake",
    )
    check.add_argument(
        "--secret-key", metavar="FILE", help=f"this host's key pair ({ENV_SECRET_KEY})"
    )
    check.add_argument("--server-key", metavar="FILE", help=f"the server's key ({ENV_SERVER_KEY})")


def _cmd_check(args: argparse.Namespace) -> int:
    """say whether this host's workers can work with an endpoint, or why not

    Check ENDPOINT from this host as its workers would use it: reachable (else: no
    route, refused, silent), its ZeroMQ handshake and this host's CURVE key (key
    refused), and our protocol version (wrong version). CURVE keys come from the
    ZMQPIPELINE_CURVE_SECRET_KEY and ZMQPIPELINE_CURVE_SERVER_KEY variables, as for a
    worker, or the options. Exit status 0 if all is well, 1 if not.
    """
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {args.timeout:g}")
    env = dict(os.environ)
    if args.secret_key:
        env[ENV_SECRET_KEY] = args.secret_key
    if args.server_key:
        env[ENV_SERVER_KEY] = args.server_key
    env.pop(ENV_AUTHORIZED_KEYS, None)  # a worker binds nothing
    security = Security.from_env(env)
    if security is not None and security.server_key is None:
        raise UsageError(
            f"CURVE needs the server's public key: give --server-key or {ENV_SERVER_KEY}"
        )
    try:
        verdict = check_endpoint(
            args.endpoint, security=security, timeout_s=args.timeout, collector=args.collector
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(verdict.line())
    sys.stdout.flush()
    return 0 if verdict.ok else 1
