"""Forked processes that always end (by PID) and free tcp ports on 127.0.0.1."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from typing import Any

from zmqpipeline.runtime import ports

FORK = multiprocessing.get_context("fork")


def free_port() -> int:
    return ports.free_port("127.0.0.1")  # below the ephemeral range (bind(0) is in it)


class Processes:
    """Starts callables as forked processes and guarantees they end (by PID)."""

    def __init__(self) -> None:
        self.started: dict[str, Any] = {}

    def start(self, name: str, target: Callable[[], Any]) -> Any:
        process = FORK.Process(target=_child, args=(target,), name=name)
        process.start()
        self.started[name] = process
        return process

    def join(self, timeout: float = 30.0) -> dict[str, int | None]:
        """Wait for every process; return name -> exit code (None if still running)."""
        import time

        deadline = time.monotonic() + timeout
        for process in self.started.values():
            process.join(max(0.0, deadline - time.monotonic()))
        return {name: p.exitcode for name, p in self.started.items()}

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        os.kill(self.started[name].pid, sig)

    def cleanup(self) -> None:
        for process in self.started.values():
            if process.exitcode is None and process.pid is not None:
                try:
                    os.kill(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            process.join(5)


def _child(target: Callable[[], Any]) -> None:
    target()


__all__ = ["FORK", "Processes", "free_port"]
