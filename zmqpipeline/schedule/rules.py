"""A job's rule: when it runs first and when it runs next. Pure functions of wall-clock
times (seconds since the epoch, as :func:`time.time` gives them); no clock is read here.

Rules (as redbike's, with iCal ``RRULE`` through the optional ``python-dateutil``,
``pip install 'zmqpipeline[schedule]'``):

- ``NOW``: once, right away (or at ``--after``).
- ``AT:2025-06-01T02:00:00`` (ISO 8601; without an offset, in the schedule's time zone):
  once, at that time (at once if it has passed).
- ``CONTINUE``: again as soon as the previous run has ended.
- ``STOP``: not any more (the job keeps its statuses).
- ``CRON:30 2 * * *`` (or the five fields alone, or ``@daily``...), through the optional
  ``cronsim``: see :mod:`.cron`.
- ``RRULE:FREQ=DAILY;BYHOUR=2;BYMINUTE=0;BYSECOND=0`` (or the same without ``RRULE:``,
  or ``DTSTART:...`` and ``RRULE:...`` lines): at each of its times. Without a
  ``DTSTART`` the rule counts from the time the job was set (``--after``), so
  ``FREQ=SECONDLY;INTERVAL=30`` runs every 30 s from then. ``COUNT`` counts the rule's
  times from its start, as iCal does, including times skipped because the previous run
  was still going. Wall-clock times follow the time zone: a daily 02:30 runs at 03:30 on
  the day the clocks skip 02:00-03:00, and once on the day 02:30 comes twice.

A rule that cannot be parsed raises :class:`BadRule`, which names the reason; the job is
then recorded with status ``bad rule`` and the others go on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from .cron import cron_expression, cron_next, looks_like_cron

__all__ = ["BadRule", "Rule", "local_zone", "parse_rule", "parse_time", "zone"]

_KEYWORDS = ("NOW", "CONTINUE", "STOP")
#: An RRULE's times are looked up to this far ahead at most (a rule with none is done).
_HORIZON_YEARS = 200


class BadRule(ValueError):
    """A job's rule that cannot be parsed (the message says why)."""


def local_zone() -> tzinfo:
    """This machine's time zone, with its daylight-saving changes."""
    try:
        from dateutil import tz  # type: ignore[import-untyped,unused-ignore]
    except ImportError:  # without the extra, the fixed offset of now
        local = datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    zone_: tzinfo = tz.tzlocal()
    return zone_


def zone(name: str | None) -> tzinfo:
    """The time zone called ``name`` (``None``: this machine's); an unknown name is a
    ``ValueError`` naming it."""
    if name is None:
        return local_zone()
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (e.g. 'Europe/Paris', 'UTC')") from None


def parse_time(text: str, tz: tzinfo) -> float:
    """An ISO 8601 time (``2025-06-01T02:00:00``, ``...+02:00``, ``...Z``) or seconds
    since the epoch, as seconds since the epoch; a naive time is in ``tz``."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(value):
            return value
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRule(f"not an ISO 8601 time: {text!r} (e.g. 2025-06-01T02:00:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.timestamp()


@dataclass(frozen=True, eq=False)
class Rule:
    """A parsed rule: :meth:`first` and :meth:`next` say when the job is due."""

    #: The rule as given (what ``schedule list`` shows).
    text: str
    #: ``NOW``, ``AT``, ``CONTINUE``, ``STOP``, ``RRULE`` or ``CRON``.
    kind: str
    #: ``AT``: its time.
    at: float | None = None
    #: ``RRULE``: dateutil's rule, counting from the job's start.
    rrule: Any = None
    #: ``CRON``: its five fields, read in ``tz`` (see :mod:`.cron`).
    cron: str | None = None
    tz: tzinfo | None = None

    @property
    def once(self) -> bool:
        """Runs at most once (``NOW``, ``AT``)."""
        return self.kind in ("NOW", "AT")

    def first(self, after: float) -> float | None:
        """The first time the job is due at or after ``after`` (``None``: never)."""
        if self.kind == "STOP":
            return None
        if self.kind == "AT":
            assert self.at is not None
            return max(self.at, after)
        if self.kind == "RRULE":
            return self._occurrence(after, inclusive=True)
        if self.kind == "CRON":
            assert self.cron is not None and self.tz is not None
            return cron_next(self.cron, after, self.tz, inclusive=True)
        return after  # NOW, CONTINUE

    def next(self, ended: float) -> float | None:
        """When the job is due again after a run that ended at ``ended`` went well
        (``None``: never; the missed times of a long run are skipped, not made up)."""
        if self.kind == "CONTINUE":
            return ended
        if self.kind == "RRULE":
            return self._occurrence(ended, inclusive=False)
        if self.kind == "CRON":
            assert self.cron is not None and self.tz is not None
            return cron_next(self.cron, ended, self.tz, inclusive=False)
        return None  # NOW, AT: once; STOP

    def _occurrence(self, after: float, inclusive: bool) -> float | None:
        start, _ = _start_and_until(self.rrule)
        when = datetime.fromtimestamp(after, start.tzinfo)
        found = self.rrule.after(when, inc=inclusive)
        if found is None or found.year - when.year > _HORIZON_YEARS:
            return None
        result: float = found.timestamp()
        if result < after or (result == after and not inclusive):
            # A wall-clock time that does not exist (the clocks skipped it) maps to a
            # moment before ``after``: the next one.
            return self._occurrence(after + 1.0, inclusive)
        return result


def parse_rule(text: str, start: float, tz: tzinfo) -> Rule:
    """Parse ``text``; an ``RRULE`` without ``DTSTART`` counts from ``start`` (seconds
    since the epoch, whole seconds taken), its wall-clock times in ``tz``."""
    if not isinstance(text, str) or not text.strip():
        raise BadRule("an empty rule (NOW, AT:ISO-8601, CONTINUE, STOP or an RRULE)")
    stripped = text.strip()
    upper = stripped.upper()
    if upper in _KEYWORDS:
        return Rule(stripped, upper)
    if upper.startswith("AT:"):
        return Rule(stripped, "AT", at=parse_time(stripped[3:], tz))
    if "FREQ=" in upper:
        return Rule(stripped, "RRULE", rrule=_rrule(stripped, start, tz))
    if looks_like_cron(stripped):
        try:
            return Rule(stripped, "CRON", cron=cron_expression(stripped, tz), tz=tz)
        except ValueError as exc:
            raise BadRule(str(exc)) from None
    raise BadRule(
        f"unknown rule {stripped[:80]!r}: one of NOW, AT:ISO-8601, CONTINUE, STOP, "
        "an iCal RRULE such as FREQ=MINUTELY;INTERVAL=5, or cron's 5 fields (*/5 * * * *)"
    )


def _rrule(text: str, start: float, tz: tzinfo) -> Any:
    try:
        from dateutil.rrule import rrulestr  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise BadRule(
            "an RRULE needs python-dateutil: pip install 'zmqpipeline[schedule]'"
        ) from None
    dtstart = datetime.fromtimestamp(math.floor(start), tz)
    body = text
    if "DTSTART" not in text.upper() and not text.upper().startswith("RRULE:"):
        body = "RRULE:" + text
    try:
        rule = rrulestr(body, dtstart=dtstart, forceset=False)
        if not hasattr(rule, "replace"):
            raise ValueError("one rule expected (no RDATE or EXDATE)")
        begins, until = _start_and_until(rule)
        if begins.tzinfo is None:  # a DTSTART without a zone: the schedule's
            rule = rule.replace(
                dtstart=begins.replace(tzinfo=tz),
                until=None if until is None else until.replace(tzinfo=tz),
            )
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise BadRule(f"bad RRULE {text[:80]!r}: {exc}") from None
    return rule


def _start_and_until(rule: Any) -> tuple[datetime, datetime | None]:
    """A dateutil rule's DTSTART and UNTIL, which it offers no public way to read."""
    return rule._dtstart, rule._until  # third-party: dateutil keeps them private
