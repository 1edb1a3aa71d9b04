"""Why a CURVE handshake failed, in the user's terms, for every role that connects: the
peer refused this key, the server key is not the server's, one side has no CURVE. Used by
:class:`HandshakeWatch` (a role's connecting sockets say so at WARNING, once) and by
``zmqpipeline check``."""

from __future__ import annotations

import logging
import threading
from typing import Any

import zmq

from ..security import (
    ENV_SECRET_KEY,
    ENV_SERVER_KEY,
    PUBLIC_KEY_SUFFIX,
    SECRET_KEY_SUFFIX,
    Security,
)

__all__ = ["HANDSHAKE_END", "HandshakeWatch", "closed_in_handshake", "handshake_failure"]

#: The monitor events that end a handshake.
HANDSHAKE_END = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED,
    zmq.EVENT_HANDSHAKE_FAILED_AUTH,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
)
_POLL_MS = 200


def public_file(security: Security) -> str:
    """The public key file beside this role's secret key file."""
    return str(security.secret_key_file).removesuffix(SECRET_KEY_SUFFIX) + PUBLIC_KEY_SUFFIX


def closed_in_handshake(curve: bool, tcp: bool = True) -> tuple[str, str]:
    """``(cause, explanation)`` when the peer closed the connection in the handshake (and
    no event said why: which side libzmq tells first is a race)."""
    if not curve and tcp:  # over tcp, the usual reason: the endpoint wants CURVE
        return (
            "key refused",
            "the endpoint closes the connection during the ZeroMQ handshake: most likely "
            f"the endpoint wants CURVE and this host has no key ({ENV_SECRET_KEY}, ...); "
            "else its socket takes no worker (a collector's endpoint? check it with "
            "--collector)",
        )
    if curve:
        return (
            "key refused",
            "the endpoint closes the connection during the CURVE handshake: the server key "
            f"({ENV_SERVER_KEY}) is not that server's public key, or the endpoint's socket "
            "takes no worker (a collector's endpoint? check it with --collector)",
        )
    return (
        "wrong version",
        "the endpoint closes the connection during the ZeroMQ handshake: its socket takes "
        "no worker (a collector's endpoint? check it with --collector), or it is not "
        "a zmqpipeline role",
    )


def handshake_failure(kind: int, value: int, security: Security | None) -> tuple[str, str]:
    """``(cause, explanation)`` of a failed handshake's monitor event."""
    if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH and security is not None:
        return (
            "key refused",
            f"the endpoint refused this host's CURVE key {security.public_key.decode()} (ZAP "
            f"status {value}): copy {public_file(security)} into the server's authorised "
            "keys directory (folder workers/) and restart it",
        )
    if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        if security is None:
            why = f"the endpoint wants CURVE and this host has no key ({ENV_SECRET_KEY}, ...)"
        else:
            why = "this host uses CURVE and the endpoint does not (plain tcp there)"
        return "key refused", f"security differs: {why}"
    if value == zmq.PROTOCOL_ERROR_ZMTP_INVALID_METADATA:
        return (
            "wrong version",
            "the endpoint's ZeroMQ socket takes no worker (socket types do not match): a "
            "collector's endpoint (check it with --collector), or not a zmqpipeline role",
        )
    if value in (zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC, zmq.PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE):
        return "key refused", f"the CURVE handshake failed: wrong {ENV_SERVER_KEY}?"
    return "wrong version", f"the ZeroMQ handshake failed (protocol error 0x{value:x})"


class HandshakeWatch:
    """Watches the handshakes of a role's connecting CURVE sockets on a thread of its own
    and says at WARNING, once per endpoint, why one failed (a refused key is otherwise
    only logged on the server's machine, and the role waits in silence)."""

    def __init__(self, role: str, security: Security, logger: logging.Logger) -> None:
        self.role, self.security, self.logger = role, security, logger
        self._monitors: dict[Any, str] = {}  # monitor socket -> endpoint
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._told: set[str] = set()
        self._thread: threading.Thread | None = None

    def watch(self, sock: zmq.Socket[Any], endpoint: str) -> None:
        """Watch ``sock`` (before it connects to ``endpoint``)."""
        monitor = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        )
        with self._lock:  # hands the monitor socket to the watching thread
            self._monitors[monitor] = endpoint
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="zmqpipeline-handshakes")
            self._thread.daemon = True
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:  # those added since the last poll join the next one
                monitors = dict(self._monitors)
            poller = zmq.Poller()
            for monitor in monitors:
                poller.register(monitor, zmq.POLLIN)
            for monitor, _ in poller.poll(_POLL_MS):
                self._read(monitor, monitors[monitor])

    def _read(self, monitor: Any, endpoint: str) -> None:
        # (imported here: it imports asyncio, a sixth of a role's start-up, for a failure)
        from zmq.utils.monitor import recv_monitor_message

        event = recv_monitor_message(monitor)
        kind, value = event["event"], event["value"]
        if kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            cause, why = closed_in_handshake(curve=True)
        else:
            cause, why = handshake_failure(kind, value, self.security)
        if endpoint not in self._told:
            self._told.add(endpoint)
            self.logger.warning("%s: cannot work with %s: %s: %s", self.role, endpoint, cause, why)

    def close(self, sockets: list[zmq.Socket[Any]]) -> None:
        """Stop watching (before the sockets close)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for sock in sockets:
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
        for monitor in self._monitors:
            monitor.close(linger=0)
        self._monitors.clear()
