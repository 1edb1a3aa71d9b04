"""Workers that leave on time: ``--lifetime``, ``--lifetime-stagger``, ``--idle-timeout``.

A worker given a lifetime leaves before it is over, at a moment drawn once between
``lifetime - stagger`` and ``lifetime`` after it started (so a job's workers do not all
leave at once, and none outlives a batch system's walltime). It leaves the way SIGTERM
makes it leave: it takes no new item, finishes the ones it runs, sends their results and
hands back (BYE) the ones it had not started; then ``run()`` returns and the process
exits 0. An idle timeout ends a worker that has heard nothing from a distributor for
that long (a job that should not wait for ever).
"""

from __future__ import annotations

import argparse
import logging
import random
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Lifetime", "add_lifetime_arguments", "parse_duration"]

logger = logging.getLogger("zmqpipeline.worker")

_UNITS_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> float:
    """``"90"``, ``"90s"``, ``"5m"``, ``"1.5h"``, ``"2d"`` -> seconds; ``ValueError``
    naming the text otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration (e.g. 45s, 5m, 1.5h, 2d)")
    return float(match.group(1)) * _UNITS_S[match.group(2)]


@dataclass
class Lifetime:
    """When a worker leaves: ``leave_at`` (a ``time.perf_counter()`` instant, or None)
    and ``idle_timeout_s`` (None: wait for a distributor for ever)."""

    leave_at: float | None = None
    idle_timeout_s: float | None = None

    @classmethod
    def starting(
        cls,
        now: float,
        lifetime_s: float | None,
        stagger_s: float = 0.0,
        idle_timeout_s: float | None = None,
    ) -> Lifetime:
        """The lifetime of a worker starting at ``now``."""
        leave_at = None
        if lifetime_s:
            leave_at = now + max(0.0, lifetime_s - random.uniform(0.0, min(stagger_s, lifetime_s)))
        return cls(leave_at, idle_timeout_s or None)

    @classmethod
    def of(cls, worker: Any, now: float) -> Lifetime:
        """The lifetime of ``worker`` (its ``lifetime_s``, ``lifetime_stagger_s`` and
        ``idle_timeout_s``), starting at ``now``."""
        return cls.starting(
            now, worker.lifetime_s, worker.lifetime_stagger_s, worker.idle_timeout_s
        )

    def heard_nothing_for(self, silent_s: float, worker_id: bytes) -> None:
        """The distributor has been silent for ``silent_s``: at the idle timeout, leave."""
        if self.idle_timeout_s is not None and silent_s >= self.idle_timeout_s:
            logger.warning(
                "worker %s: no distributor for %.0f s, leaving", worker_id.decode(), silent_s
            )
            self.leave_at = 0.0

    def over(self, now: float) -> bool:
        """True once the worker should leave."""
        return self.leave_at is not None and now >= self.leave_at

    def poll_ms(self, now: float, timeout_ms: int) -> int:
        """``timeout_ms``, shortened so a poll ends when the lifetime does."""
        if self.leave_at is None:
            return timeout_ms
        return max(1, min(timeout_ms, int((self.leave_at - now) * 1000) + 1))


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_lifetime_arguments(parser: argparse.ArgumentParser) -> None:
    """``--lifetime``, ``--lifetime-stagger`` and ``--idle-timeout`` for ``worker``."""
    parser.add_argument(
        "--lifetime",
        type=_duration,
        metavar="DURATION",
        help="leave this long after starting (e.g. 55m under a 1 h walltime): take no new "
        "item, finish the running ones, hand back the others, exit 0; 0: no limit",
    )
    parser.add_argument(
        "--lifetime-stagger",
        type=_duration,
        default=0.0,
        metavar="DURATION",
        help="leave up to this much earlier, drawn at random per worker (default 0)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_duration,
        metavar="DURATION",
        help="exit 0 after this long without hearing from a distributor",
    )
