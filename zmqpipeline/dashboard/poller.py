"""Reads the distributor's status through its control endpoint, at most once a second
however many browsers and scrapers are watching, and hands the latest snapshot to all.

A snapshot is what the page and ``/metrics`` read::

    {"connected": True, "endpoint": "ipc://...", "polled_at": 1700000000.0,
     "error": None, "status": {...Control.status()...}}

When the distributor does not answer, ``connected`` is false, ``error`` says why and
``status`` is ``None``; the poller goes on asking, so a restarted (journaled) distributor
at the same endpoint is picked up again by itself.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from ..distributor.control import Control
from ..errors import ControlError
from ..security import Security

__all__ = ["POLL_INTERVAL_S", "StatusPoller"]

logger = logging.getLogger("zmqpipeline.dashboard")

#: The poller reads the status at most this often (seconds between the starts of reads).
POLL_INTERVAL_S = 1.0
#: How long one read waits for the distributor's reply.
POLL_TIMEOUT_S = 1.0


class StatusPoller:
    """One thread reads the status every ``interval_s``; readers wait for the next one
    with :meth:`wait_newer`, so N browsers cost the distributor one read a second."""

    def __init__(
        self,
        endpoint: str,
        security: Security | None = None,
        interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self.endpoint = endpoint
        self.interval_s = interval_s
        self._reader = Control(endpoint, security, timeout=min(POLL_TIMEOUT_S, interval_s))
        self._commander = Control(endpoint, security)
        self._changed = threading.Condition()
        self._command_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-poller", daemon=True)
        self.seq = 0  # snapshots published so far
        self.polls = 0  # status reads sent to the distributor
        self.snapshot: dict[str, Any] = _snapshot(endpoint, None, "not read yet")
        self.payload = json.dumps(self.snapshot).encode()

    def start(self) -> None:
        """Start reading (the first read at once)."""
        self._thread.start()

    def close(self) -> None:
        """Stop reading and wake every waiting reader."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join(POLL_TIMEOUT_S + 2.0)

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def wait_newer(self, seq: int, timeout_s: float) -> tuple[int, bytes | None]:
        """``(seq, payload)`` of the first snapshot newer than ``seq``; ``(seq, None)``
        after ``timeout_s`` with nothing new (or once closed)."""
        with self._changed:
            self._changed.wait_for(lambda: self.seq > seq or self._stop.is_set(), timeout_s)
            if self.seq > seq and not self._stop.is_set():
                return self.seq, self.payload
            return seq, None

    def command(self, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send an operator command (``pause``, ``retry_failed``, ...); its reply's body.
        Raises :class:`~zmqpipeline.ControlError` when refused or unanswered."""
        with self._command_lock:
            return self._commander.call(name, args)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at = time.monotonic() + self.interval_s
            self.polls += 1
            try:
                status: dict[str, Any] | None = self._reader.status()
                error = None
            except ControlError as exc:
                status, error = None, str(exc)
            except Exception as exc:  # a bug must not end the dashboard: say it, go on
                logger.exception("dashboard: reading the status failed")
                status, error = None, f"{type(exc).__name__}: {exc}"
            self._publish(_snapshot(self.endpoint, status, error))

    def _publish(self, snapshot: dict[str, Any]) -> None:
        payload = json.dumps(snapshot).encode()  # once, whatever the number of readers
        was_connected = self.snapshot["connected"]
        with self._changed:
            self.snapshot, self.payload = snapshot, payload
            self.seq += 1
            self._changed.notify_all()
        if was_connected != snapshot["connected"]:  # the page says so; the log only notes it
            logger.info(
                "dashboard: the distributor at %s %s",
                self.endpoint,
                "answers" if snapshot["connected"] else f"does not answer ({snapshot['error']})",
            )


def _snapshot(endpoint: str, status: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
    return {
        "connected": status is not None,
        "endpoint": endpoint,
        "polled_at": time.time(),
        "error": error,
        "status": status,
    }
