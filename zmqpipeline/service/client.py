"""``ServiceClient``: sends requests to a :class:`~zmqpipeline.Service` and waits for replies.

One DEALER socket per client (created on first use, and again after a ``fork``), so a client
can have many requests in flight: a ``list`` request fans out as one request per element,
served by several workers in parallel, and the replies come back in the list's order.

Each request carries an id; a reply is matched to it by id, so late or duplicate replies
(a request re-routed after its worker died, a reply from before a retry) are ignored.
When no reply comes within ``timeout`` seconds the client sends the missing requests again
under the same ids (the service does not start a second copy of one still in progress)
and waits again, at most ``retries`` times; then it raises :class:`RequestTimeout`. An error
reply (the worker raised, or the service refused the request) raises :class:`RequestFailed`.
Both are :class:`~zmqpipeline.errors.ServiceError`.

A client is not thread-safe: use one per thread.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any, cast

import zmq

from .. import protocol
from ..errors import (
    ConfigurationError,
    ProtocolError,
    RequestFailed,
    RequestTimeout,
)
from ..security import Security
from ..settings import Settings
from ..transport import DropCounter, new_context, open_socket
from ..types import EndpointAddress

__all__ = [
    "REQUEST_RETRIES",
    "REQUEST_TIMEOUT_S",
    "RequestFailed",
    "RequestTimeout",
    "ServiceClient",
]

logger = logging.getLogger("zmqpipeline.serviceclient")

_TO_CLIENT = frozenset({protocol.REPLY, protocol.REQUEST_ERROR})
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)

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
        self.drops = DropCounter(logger, "service client")
        self._codec = protocol.Codec(self.settings.max_message_bytes)
        self._ctx: zmq.Context[Any] | None = None
        self._sock: zmq.Socket[Any] | None = None
        self._pid = 0
        self._next_id = 1

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
        """Close the socket (pending replies are dropped). The client reopens it if used."""
        if self._sock is not None and self._pid == os.getpid():
            self._sock.close(linger=0)
            if self._ctx is not None:
                self._ctx.term()
        self._sock = self._ctx = None

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------

    def _socket(self) -> zmq.Socket[Any]:
        if self._sock is None or self._pid != os.getpid():
            # After a fork the parent's socket is not ours to use or close: start afresh.
            self._pid = os.getpid()
            self._ctx = new_context()
            identity = f"{socket.gethostname()}:{self._pid}:{uuid.uuid4().hex[:8]}".encode()
            self._sock = open_socket(
                self._ctx,
                zmq.DEALER,
                self.endpoint,
                bind=False,
                settings=self.settings,
                identity=identity,  # stable across reconnects: a reply finds us again
                role="service client",
            )
            # Requests and replies are bounded by the caller's own list: never block on a
            # high-water mark, never drop a reply for one.
            self._sock.setsockopt(zmq.SNDHWM, 0)
            self._sock.setsockopt(zmq.RCVHWM, 0)
            self._poller = zmq.Poller()
            self._poller.register(self._sock, zmq.POLLIN)
        return self._sock

    def _exchange(
        self, items: list[Any], task_type: str, timeout: float, retries: int
    ) -> list[Any]:
        sock = self._socket()
        first = self._next_id
        self._next_id += len(items)
        # Encode everything first: a value msgpack cannot carry fails before anything is sent.
        messages = [self._codec.request(first + i, task_type, item) for i, item in enumerate(items)]
        replies: dict[int, Any] = {}
        for attempt in range(retries + 1):
            for index, frames in enumerate(messages):
                if index not in replies:
                    sock.send_multipart(frames)
            deadline = time.monotonic() + timeout
            while len(replies) < len(items):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if self._poller.poll(max(1, int(remaining * 1000))):
                    self._receive(sock, first, len(items), replies, task_type)
            if len(replies) == len(items):
                return [replies[i] for i in range(len(items))]
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
        what = (
            "no reply"
            if len(items) == 1
            else f"{len(items) - len(replies)} of {len(items)} replies missing"
        )
        raise RequestTimeout(
            f"{what} from the service at {self.endpoint} for task type {task_type!r} after "
            f"{retries + 1} attempt(s) of {timeout:g} s"
        )

    def _receive(
        self, sock: zmq.Socket[Any], first: int, n: int, replies: dict[int, Any], task_type: str
    ) -> None:
        while cast(int, sock.getsockopt(_EVENTS)) & _POLLIN:  # cheaper than catching zmq.Again
            frames = sock.recv_multipart(_NOBLOCK)
            try:
                kind, body = protocol.decode(frames, _TO_CLIENT, "at a client")
                if len(body) != 2:  # [client, id, ...]: sent to the service, not to a client
                    raise ProtocolError(
                        f"{protocol.KIND_NAMES[kind]} for the service", frames, "wrong direction"
                    )
            except ProtocolError as exc:
                self.drops.drop(exc.category, exc.reason)
                continue
            index = body[0] - first
            if not 0 <= index < n or index in replies:
                continue  # a late or duplicate reply to an earlier request
            if kind == protocol.REPLY:
                replies[index] = body[1]
                continue
            error: str = body[1]
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
