"""Cron rules: ``CRON:30 2 * * *``, or the five fields alone (``*/5 * * * *``), and the
nicknames ``@hourly``, ``@daily`` (``@midnight``), ``@weekly``, ``@monthly``,
``@yearly`` (``@annually``). Read by the optional ``cronsim`` (``pip install
'zmqpipeline[schedule]'``: one small module, no dependency of its own), with cron's own
meaning: minute, hour, day of month, month, day of week (names or numbers, ``L``, ``W``,
``#``); a day of month and a day of week both given match either, as cron does (an
RRULE's ``BYMONTHDAY`` with ``BYDAY`` would need both).

Wall-clock times are in the schedule's time zone; as cron on Debian, a time the clocks
skip (02:30 when they go from 02:00 to 03:00) runs at the first minute after the gap,
and a time that comes twice runs once. Pure functions of the time, as :mod:`.rules`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any

__all__ = ["cron_expression", "cron_next", "looks_like_cron"]

_PREFIX = "CRON:"
_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def looks_like_cron(text: str) -> bool:
    """``CRON:...``, a nickname, or five fields separated by spaces."""
    return (
        text.upper().startswith(_PREFIX)
        or text.lower() in _NICKNAMES
        or (len(text.split()) == 5 and "=" not in text)
    )


def _sim() -> tuple[Any, type[Exception]]:
    try:
        from cronsim import CronSim, CronSimError  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise ValueError("a cron rule needs cronsim: pip install 'zmqpipeline[schedule]'") from None
    return CronSim, CronSimError


def cron_expression(text: str, tz: tzinfo) -> str:
    """The five fields of a cron rule, checked (a bad one is a ``ValueError`` naming the
    field, which :func:`~zmqpipeline.schedule.rules.parse_rule` turns into a ``BadRule``)."""
    body = text[len(_PREFIX) :] if text.upper().startswith(_PREFIX) else text
    body = " ".join(body.split())
    body = _NICKNAMES.get(body.lower(), body)
    sim, error = _sim()
    try:
        sim(body, datetime.now(tz))
    except error as exc:
        raise ValueError(
            f"bad cron rule {text[:80]!r}: {exc} (minute hour day-of-month month day-of-week)"
        ) from None
    return body


def cron_next(expression: str, after: float, tz: tzinfo, inclusive: bool) -> float | None:
    """The rule's first time after ``after`` (at or after, ``inclusive``), seconds since
    the epoch; ``None``: it has none (a rule as ``0 0 31 2 *`` is refused when parsed)."""
    sim, _ = _sim()
    when = datetime.fromtimestamp(after, tz)
    if inclusive:
        when -= timedelta(microseconds=1)
    try:
        found: datetime = next(sim(expression, when))
    except StopIteration:
        return None
    return found.timestamp()
