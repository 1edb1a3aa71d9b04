"""``ServiceClient``: sends requests to a :class:`~zmqpipeline.Service` and waits for replies.

A client opens its DEALER socket (in a :class:`~zmqpipeline.runtime.runtime.RoleRuntime`) at
its first request and keeps it until :meth:`ServiceClient.close` (a socket and a context
per request cost more than the request); a forked child opens its own at its first
request. A request may have many requests in flight: a ``list`` request fans out
as one request per element, served by several workers in parallel, and the replies come
back in the list's order.

Each request carries an id; a reply is matched to it by id, so late or duplicate replies
(a request re-routed after its worker died, a reply from before a retry) are ignored.
When no reply comes within ``timeout`` seconds the client sends the missing requests again
under the same ids (the service does not start a second copy of one still in progress)
and waits again, at most ``retries`` times; then it raises :class:`RequestTimeout`. An error
reply (the worker raised, or the service refused the request) raises :class:`RequestFailed`.
Both are :class:`~zmqpipeline.errors.ServiceError`.

While a request waits (and only then), SIGINT/SIGTERM end the wait at once: the socket
is closed, the signal handlers in place before the call are restored and the signal is
raised again for them (``KeyboardInterrupt`` for SIGINT by default); if they return,
:class:`ServiceError` says the request was interrupted.

A client is not thread-safe: use one per thread.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import uuid
from typing import Any

import zmq

from .. import protocol
from ..errors import (
    ConfigurationError,
    ProtocolError,
    RequestFailed,
    RequestTimeout,
    ServiceError,
)
from ..runtime.runtime import RoleRuntime
from ..runtime.transport import StopSignal, recv_frames
from ..security import Security
from ..settings import Settings
from ..types import EndpointAddress

__all__ = [
    "REQUEST_RETRIES",
    "REQUEST_TIMEOUT_S",
    "RequestFailed",
    "RequestTimeout",
    "ServiceClient",
]

logger = logging.getLogger("zmqpipeline.serviceclient")

#: How long one attempt waits for its reply(ies).
REQUEST_TIMEOUT_S = 10.0
#: How many times a request with no reply is sent again before :class:`RequestTimeout`.
REQUEST_RETRIES = 2


class ServiceClient:
    """Sends requests to the service whose frontend is at ``endpoint``.

    ``task_type`` is the default for :meth:`request`. ``timeout`` (seconds per attempt) and
    ``retries`` are the defaults for every request. ``security``: CURVE keys for a tcp
    endpoint (default: the ``ZMQPIPELINE_CURVE_*`` variables, or none).
    """

    def __init__(
        self,
        endpoint: str,
        task_type: str = "",
        *,
        timeout: float = REQUEST_TIMEOUT_S,
        retries: int = REQUEST_RETRIES,
        settings: Settings | None = None,
        security: Security | None = None,
    ) -> None:
        self.endpoint = EndpointAddress(endpoint)
        if not isinstance(task_type, str):
            raise TypeError(f"task_type must be a str, not {type(task_type).__name__}")
        self.task_type = task_type
        self.timeout = _check_timeout(timeout)
        self.retries = _check_retries(retries)
        self.settings = settings or Settings.from_env(security=security)
        self._codec = protocol.Codec(self.settings.max_message_bytes)
        self._next_id = 1
        self._link: tuple[RoleRuntime, zmq.Socket[Any]] | None = None
        self._pid = os.getpid()  # the process the link belongs to

    def request(
        self,
        data: Any,
        task_type: str = "",
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Any:
        """Send ``data`` to a worker of ``task_type`` (default: the client's) and return its
        reply. A ``list`` fans out: each element is one request, and the list of replies
        comes back in order. Raises :class:`RequestFailed` or :class:`RequestTimeout`."""
        if not isinstance(task_type, str):
            raise TypeError(f"task_type must be a str, not {type(task_type).__name__}")
        task_type = task_type or self.task_type
        if not task_type:
            raise ConfigurationError(
                "no task type: give ServiceClient(endpoint, task_type=...) or "
                "request(data, task_type=...)"
            )
        timeout = self.timeout if timeout is None else _check_timeout(timeout)
        retries = self.retries if retries is None else _check_retries(retries)
        if isinstance(data, list):
            return self._exchange(data, task_type, timeout, retries) if data else []
        return self._exchange([data], task_type, timeout, retries)[0]

    def close(self) -> None:
        """Close the client's socket and context (a request after it opens new ones)."""
        link, self._link = self._link, None
        if link is not None and self._pid == os.getpid():
            link[0].close()

    def _connected(self) -> tuple[RoleRuntime, zmq.Socket[Any]]:
        """The client's runtime and socket, opened at the first request of this process
        (a forked child leaves its parent's alone: they are the parent's)."""
        if self._link is None or self._pid != os.getpid():
            self._pid = os.getpid()
            rt = RoleRuntime("service client", self.settings, logger, signals=False)
            try:
                identity = f"{socket.gethostname()}:{self._pid}:{uuid.uuid4().hex[:8]}".encode()
                sock = rt.open(zmq.DEALER, self.endpoint, bind=False, identity=identity)
                sock.setsockopt(zmq.LINGER, 0)  # what is unsent when the client closes is moot
                # Requests and replies are bounded by the caller's own lists: never wait on
                # a high-water mark, never leave a reply unread for one.
                sock.setsockopt(zmq.SNDHWM, 0)
                sock.setsockopt(zmq.RCVHWM, 0)
            except BaseException:
                rt.close()
                raise
            self._link = rt, sock
        return self._link

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------

    def _exchange(
        self, items: list[Any], task_type: str, timeout: float, retries: int
    ) -> list[Any]:
        first = self._next_id
        self._next_id += len(items)
        # Encode everything first: a value msgpack cannot carry fails before anything is sent.
        messages = [self._codec.request(first + i, task_type, item) for i, item in enumerate(items)]
        replies: dict[int, Any] = {}
        rt, sock = self._connected()
        idle, rt.stop = rt.stop, StopSignal()  # our handlers while the request waits
        try:
            for attempt in range(retries + 1):
                self._attempt(rt, sock, messages, first, replies, task_type, timeout)
                if len(replies) == len(items) or rt.stop.is_set:
                    break
                if attempt < retries:
                    logger.warning(
                        "no reply within %g s from the service at %s (task type %r, %d of %d "
                        "missing); sending again (retry %d of %d)",
                        timeout,
                        self.endpoint,
                        task_type,
                        len(items) - len(replies),
                        len(items),
                        attempt + 1,
                        retries,
                    )
            signum = rt.stop.signum if rt.stop.is_set else None
        finally:
            rt.stop.close()
            rt.stop = idle
            if len(replies) < len(items):
                self.close()  # what is unsent dies with the socket: never delivered late
        if signum is not None:  # the handlers from before the call are back: let them act
            self.close()
            signal.raise_signal(signum)
            raise ServiceError(
                f"request to task type {task_type!r} interrupted by {signal.strsignal(signum)}"
            )
        if len(replies) == len(items):
            return [replies[i] for i in range(len(items))]
        what = (
            "no reply"
            if len(items) == 1
            else f"{len(items) - len(replies)} of {len(items)} replies missing"
        )
        raise RequestTimeout(
            f"{what} from the service at {self.endpoint} for task type {task_type!r} after "
            f"{retries + 1} attempt(s) of {timeout:g} s"
        )

    def _attempt(
        self,
        rt: RoleRuntime,
        sock: zmq.Socket[Any],
        messages: list[list[bytes]],
        first: int,
        replies: dict[int, Any],
        task_type: str,
        timeout: float,
    ) -> None:
        """Send the requests still unanswered and collect replies for up to ``timeout``."""
        deadline = time.monotonic() + timeout
        for index, frames in enumerate(messages):
            if index not in replies:
                if not rt.send(sock, frames, max(0.0, deadline - time.monotonic())):
                    return  # stopped, or the attempt's time is up
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(rt.stop.fd, zmq.POLLIN)
        while len(replies) < len(messages) and not rt.stop.is_set:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if sock in dict(poller.poll(max(1, int(remaining * 1000)))):
                self._receive(rt, sock, first, len(messages), replies, task_type)

    def _receive(
        self,
        rt: RoleRuntime,
        sock: zmq.Socket[Any],
        first: int,
        n: int,
        replies: dict[int, Any],
        task_type: str,
    ) -> None:
        limit = self.settings.max_message_bytes
        while True:
            try:
                frames = recv_frames(sock, 2)  # [header, body]; more parts are not kept
                if frames is None:
                    return
                msg = protocol.decode(frames, protocol.SERVICE_CLIENT, "at a client", limit)
            except ProtocolError as exc:
                rt.drops.drop(exc.category, exc.reason)
                continue
            index = msg.request_id - first
            if not 0 <= index < n or index in replies:
                continue  # a late or duplicate reply to an earlier request
            if isinstance(msg, protocol.Reply):
                replies[index] = msg.data
                continue
            error: str = msg.error
            where = "" if n == 1 else f" (element {index} of {n})"
            headline = error.splitlines()[0] if error else "no detail"
            raise RequestFailed(
                f"request to task type {task_type!r}{where} failed: {headline}",
                task_type,
                error,
                None if n == 1 else index,
            )


def _check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def _check_retries(retries: int) -> int:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigurationError(f"retries must be a non-negative int, got {retries!r}")
    return retries
