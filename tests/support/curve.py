"""CURVE in the tests: the configuration set in a child only, roles run under a worker
id, and the handshake events a refused peer may see."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import zmq
import zmq.auth

from zmqpipeline.security import (
    ENV_AUTHORIZED_KEYS,
    ENV_SECRET_KEY,
    ENV_SERVER_KEY,
)

CURVE_ENV = (ENV_SECRET_KEY, ENV_SERVER_KEY, ENV_AUTHORIZED_KEYS)


HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


# A NULL (keyless) peer of a CURVE server: the server drops it during the greeting.
NULL_REFUSED = {zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL}


# What a refused client may see: the server can also close the connection before the
# client has read the greeting, which the client sees as a plain disconnect.
REFUSED = HANDSHAKE_FAILED | zmq.EVENT_DISCONNECTED


def with_env(env: dict[str, str] | None, target: Callable[[], Any]) -> Callable[[], Any]:
    """``target`` run with ``env`` as its CURVE configuration (None: none) — in the child."""

    def run() -> Any:
        for name in CURVE_ENV:
            os.environ.pop(name, None)
        os.environ.update(env or {})
        return target()

    return run


def run_as(cls: type, worker_id: str) -> Callable[[], None]:
    def run() -> None:
        worker = cls()
        worker.worker_id = worker_id.encode()
        worker.run()

    return run


def exit_codes(procs: Any, names: list[str], timeout: float = 30.0) -> dict[str, int | None]:
    for name in names:
        procs.started[name].join(timeout)
    return {name: procs.started[name].exitcode for name in names}


def check_exactly_once(results: dict[str, Any], n: int) -> None:
    seen = Counter(item[1]["i"] for item in results["items"])
    assert sorted(seen) == list(range(1, n + 1)) and set(seen.values()) == {1}
