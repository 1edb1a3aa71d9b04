"""The executor's parts inside the calling process, each on a thread with its own
sockets, and its local workers: the open-ended task its calls are pushed into, the
collector that resolves futures, the feeder that pushes calls, the worker processes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import zmq

from .. import protocol
from ..collector import Collector
from ..distributor.push import PUSH_BATCH_ITEMS
from ..runtime.runtime import RoleRuntime
from ..security import ENV_AUTHORIZED_KEYS, ENV_SECRET_KEY, ENV_SERVER_KEY, Security
from ..settings import Settings
from ..task import Task
from ..types import EndpointAddress
from .calls import Calls
from .worker import EXECUTOR_TASK_TYPE

__all__ = ["collector_class", "feed", "start_workers", "task_class"]

logger = logging.getLogger("zmqpipeline.executor")

#: How long the feeder waits for the distributor to take a push before the executor
#: counts as broken.
PUSH_REPLY_TIMEOUT_S = 30.0
#: A call runs as long as it needs: no time limit re-issues it while its worker beats.
NO_TIME_LIMIT_S = 365 * 24 * 3600.0


def task_class(
    endpoint: str, max_attempts: int, retry_for: tuple[type[BaseException] | str, ...] | None
) -> type[Task]:
    """The open-ended task whose items are the executor's calls."""
    attrs = {
        "task_type": EXECUTOR_TASK_TYPE,
        "endpoint": EndpointAddress(endpoint),
        "open_ended": True,
        "max_attempts": max_attempts,
        "retry_for": retry_for,
        "item_time_limit_s": NO_TIME_LIMIT_S,
    }
    return type("ExecutorCalls", (Task,), attrs)


def collector_class(endpoint: str, ack_endpoint: str, calls: Calls) -> type[Collector]:
    """A collector whose ``handle_collection`` resolves the call's future."""
    resolve = calls.resolve

    def handle_collection(self: Any, data: dict[str, Any], task_type: str, msgtype: str) -> None:
        resolve(data)

    attrs = {
        "endpoint": EndpointAddress(endpoint),
        "ack_endpoint": EndpointAddress(ack_endpoint),
        "handle_collection": handle_collection,
    }
    return type("ExecutorCollector", (Collector,), attrs)


#: How often the feeder, waiting for the distributor's reply, looks whether it failed.
_REPLY_SLICE_S = 0.2


def feed(calls: Calls, push_endpoint: str, settings: Settings) -> None:
    """The feeder thread: push calls into the distributor as the window has room, then
    close the stream once the executor is shut down and every call is pushed."""
    codec = protocol.Codec(settings.max_message_bytes)
    with RoleRuntime("executor", settings, logger) as rt:
        sock = rt.open(zmq.DEALER, push_endpoint, bind=False)
        sock.setsockopt(zmq.LINGER, 0)
        while True:
            payloads, closing = calls.take(PUSH_BATCH_ITEMS)
            if calls.broken:
                return
            if payloads and not _push(rt, sock, codec, payloads, calls):
                return
            if closing:
                request_id = uuid.uuid4().int >> 66
                frames = codec.push_close(request_id, EXECUTOR_TASK_TYPE)
                _exchange(rt, sock, request_id, frames, calls)
                return


def _push(
    rt: RoleRuntime,
    sock: zmq.Socket[Any],
    codec: protocol.Codec,
    payloads: list[dict[str, Any]],
    calls: Calls,
) -> bool:
    sent = 0
    while sent < len(payloads):
        request_id = uuid.uuid4().int >> 66
        frames = codec.push(request_id, EXECUTOR_TASK_TYPE, payloads[sent:])
        reply = _exchange(rt, sock, request_id, frames, calls)
        if reply is None:
            return False
        if not reply.accepted:  # the backlog is full: the window is larger than it
            if rt.stop.is_set:
                return False
            sock.poll(10)
        sent += reply.accepted
    return True


def _exchange(
    rt: RoleRuntime, sock: zmq.Socket[Any], request_id: int, frames: list[bytes], calls: Calls
) -> protocol.PushReply | None:
    sock.send_multipart(frames)
    reply: protocol.PushReply | None = None
    deadline = time.monotonic() + PUSH_REPLY_TIMEOUT_S
    # In slices: a distributor that failed breaks every call, and nothing answers then.
    while reply is None and not calls.broken and time.monotonic() < deadline:
        reply = rt.await_reply(
            sock, protocol.PUSH_REPLY, request_id, _REPLY_SLICE_S, "from the executor's run"
        )
        if rt.stop.is_set:
            break
    if reply is None or not reply.ok:
        why = "no reply" if reply is None else reply.error
        calls.break_all(f"the executor's distributor did not take its calls: {why}")
        return None
    return reply


def start_workers(
    n: int,
    endpoint: str,
    results: str,
    threads: int,
    prefetch: int | None,
    settings: Settings,
    key_dir: str,
) -> list[subprocess.Popen[bytes]]:
    """``n`` local worker processes (fresh interpreters, ``zmqpipeline executor-worker``),
    which import what this process can: its ``sys.path`` is their ``PYTHONPATH``. They end
    with the executor's run, or when this process dies. With CURVE they hold the
    executor's own key pair (its sockets admit it; see :mod:`zmqpipeline.security`)."""
    if n == 0:
        return []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(_path_entries(sys.path))
    env["ZMQPIPELINE_HEARTBEAT_INTERVAL_S"] = repr(settings.heartbeat_interval_s)
    env["ZMQPIPELINE_LIVENESS_MISSES"] = str(settings.liveness_misses)
    env.update(_curve_env(settings.security, key_dir))
    command = [sys.executable, "-m", "zmqpipeline", "executor-worker", endpoint]
    command += ["--results", results, "--threads", str(threads)]
    if prefetch is not None:
        command += ["--prefetch", str(prefetch)]
    command += ["--parent", str(os.getpid())]
    return [subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL) for _ in range(n)]


def _curve_env(security: Security | None, key_dir: str) -> dict[str, str]:
    """The ``ZMQPIPELINE_CURVE_*`` variables of a local worker: none without CURVE, else
    the executor's key pair and its public key as the server's (written to ``key_dir``
    when its :class:`~zmqpipeline.Security` names no server key file)."""
    if security is None:
        return {env: "" for env in (ENV_SECRET_KEY, ENV_SERVER_KEY, ENV_AUTHORIZED_KEYS)}
    server = security.server_public_key_file
    if server is None or security.server_key != security.public_key:
        server = os.path.join(key_dir, "executor.key")
        with open(server, "w", encoding="ascii") as out:
            out.write(f'metadata\ncurve\n    public-key = "{security.public_key.decode()}"\n')
    return {
        ENV_SECRET_KEY: os.fspath(security.secret_key_file),
        ENV_SERVER_KEY: os.fspath(server),
        ENV_AUTHORIZED_KEYS: "",
    }


def _path_entries(path: Sequence[str]) -> list[str]:
    entries = [os.path.abspath(p or os.curdir) for p in path]
    return [p for i, p in enumerate(entries) if p not in entries[:i] and os.path.isdir(p)]
