"""Recurring jobs on an open-ended task (from redbike): each job has an id, a rule
(``NOW``, ``AT:ISO-8601``, ``CONTINUE``, ``STOP`` or an iCal ``RRULE``) and its own
data; a due job is handed out as one item, never while its previous run is in flight;
what the worker returns or raises steers the job. See docs/guides/recurring.md.

- :mod:`.rules`: parsing a rule and when it is due (pure functions of the time);
- :mod:`.book`: every decision about one task's jobs, with a hand-held clock;
- :mod:`.store`: jobs, statuses and the last runs of each, in SQLite beside the journal;
- :mod:`.outcomes`: :class:`Backoff`, :class:`StopJob`, :class:`UnsetJob`;
- :mod:`.task`: :class:`Schedule` and :class:`ScheduledTask`;
- :mod:`.commands`: the control endpoint's ``schedule_*`` commands.

The distributor's side lives in :mod:`zmqpipeline.distributor.recurring`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..utils.lazy import lazy_names

if TYPE_CHECKING:
    from .outcomes import Backoff, StopJob, UnsetJob
    from .rules import BadRule, Rule, parse_rule
    from .task import Schedule, ScheduledTask, read_jobs_csv

# Imported on first use: the distributor imports .commands and .outcomes in every run,
# and a run with no scheduled task needs nothing more of this package.
__getattr__ = lazy_names(
    __name__,
    {
        "Backoff": ".outcomes",
        "StopJob": ".outcomes",
        "UnsetJob": ".outcomes",
        "BadRule": ".rules",
        "Rule": ".rules",
        "parse_rule": ".rules",
        "Schedule": ".task",
        "ScheduledTask": ".task",
        "read_jobs_csv": ".task",
    },
    globals(),
)

__all__ = [
    "Backoff",
    "BadRule",
    "Rule",
    "Schedule",
    "ScheduledTask",
    "StopJob",
    "UnsetJob",
    "parse_rule",
    "read_jobs_csv",
]
