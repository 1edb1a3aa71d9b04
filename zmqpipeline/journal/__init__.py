"""Crash journals (SQLite, nothing to install): the store (:mod:`.store`), the distributor's
run journal (:mod:`.run`) and the collector's (:mod:`.collector`)."""

from .collector import CollectorJournal
from .run import DistributorJournal, JournaledRun, RunJournal, run_is_complete

__all__ = [
    "CollectorJournal",
    "DistributorJournal",
    "JournaledRun",
    "RunJournal",
    "run_is_complete",
]
