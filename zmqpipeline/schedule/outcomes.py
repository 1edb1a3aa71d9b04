"""How a worker steers its job, and the outcome of one run as the distributor learns it.

A worker of a scheduled task (see :class:`~zmqpipeline.schedule.ScheduledTask`) says what
becomes of its job by what its ``handle_execution`` does:

- returns normally (a dict or ``None``): the run went well, the job is due again as its
  rule says;
- returns :class:`Backoff` (``return zmqpipeline.Backoff(30)``, or any result dict with a
  ``"backoff_s"`` key): the job is due again no sooner than 30 s after this run ended;
- raises :class:`StopJob`: the job's rule becomes ``STOP``, it is never due again;
- raises :class:`UnsetJob`: the job is forgotten (removed from the schedule);
- raises anything else: the task's retry policy applies (``max_attempts``,
  ``retry_backoff_s``, ``retry_for``); once the tries are used up the job is recorded as
  failed, and is not due again unless the schedule says ``reschedule_on_error=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import ZmqPipelineError

__all__ = [
    "BACKOFF_KEY",
    "SIGNALS",
    "Backoff",
    "Outcome",
    "StopJob",
    "UnsetJob",
    "outcome_of_result",
    "signal_of",
]

#: The key of a result dict that asks for a backoff, in seconds.
BACKOFF_KEY = "backoff_s"


class Backoff(dict[str, Any]):
    """What a worker returns to run its job again no sooner than ``seconds`` after this
    run: a result dict (the collector gets it) holding ``{"backoff_s": seconds}`` and, if
    given, the run's own ``result`` keys."""

    def __init__(self, seconds: float, result: dict[str, Any] | None = None) -> None:
        if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"Backoff(seconds): a number >= 0 of seconds, not {seconds!r}")
        super().__init__(result or {})
        self[BACKOFF_KEY] = float(seconds)


class StopJob(ZmqPipelineError):
    """Raised by a worker: its job is never run again (its rule becomes ``STOP``; it
    keeps its statuses and history; ``zmqpipeline schedule set`` can start it again)."""

    #: Logged in one line at INFO, not as an error with its traceback.
    steers_job = True


class UnsetJob(ZmqPipelineError):
    """Raised by a worker: its job is removed from the schedule (``schedule set`` can set
    it again)."""

    #: Logged in one line at INFO, not as an error with its traceback.
    steers_job = True


@dataclass(frozen=True)
class Outcome:
    """How one run of a job ended, as the distributor learned it."""

    #: ``ok``, ``backoff``, ``stopped``, ``unset``, ``failed`` or ``timed out``.
    kind: str
    error: str = ""
    backoff_s: float = 0.0


#: Exception names (as a FAIL carries them) that steer the job rather than fail it.
SIGNALS = {"StopJob": "stopped", "UnsetJob": "unset"}


def outcome_of_result(result: dict[str, Any]) -> Outcome:
    """The outcome a worker's result asks for: a backoff, or ``ok``. A ``backoff_s`` that
    is not a number >= 0 is ignored (the run still went well), the outcome says so."""
    if BACKOFF_KEY not in result:
        return Outcome("ok")
    seconds = result[BACKOFF_KEY]
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return Outcome("ok", error=f"ignored {BACKOFF_KEY}={seconds!r}: not a number")
    if not math.isfinite(seconds) or seconds < 0:
        return Outcome("ok", error=f"ignored {BACKOFF_KEY}={seconds!r}: not a number >= 0")
    return Outcome("backoff", backoff_s=float(seconds))


def signal_of(exc_types: list[str]) -> str | None:
    """``stopped`` or ``unset`` when a FAIL's exception is :class:`StopJob` or
    :class:`UnsetJob` (or derives from it), else ``None``."""
    for name in exc_types:
        if name in SIGNALS:
            return SIGNALS[name]
    return None
