"""``Distributor``: hands out every registered task's items and ends the run when all are
collected. The decisions live in :class:`~zmqpipeline.distributor.scheduler.Scheduler`; this module
owns the sockets and the poll loop."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any, ClassVar

import zmq

from .. import protocol
from ..errors import ConfigurationError, JournalError
from ..journal.fingerprint import changes, fingerprints
from ..journal.run import DistributorJournal, JournaledRun
from ..runtime.runtime import RoleRuntime, UserCodeError, call_user
from ..runtime.transport import DropCounter
from ..runtime.waitlog import WaitLog
from ..security import Security
from ..settings import Settings
from ..task import Task
from ..types import EndpointAddress
from .links import Links
from .report import RunReport
from .resume import resume_report
from .scheduler import Scheduler
from .state import COLLECTOR, check_dependencies

__all__ = ["Distributor", "RunReport"]

logger = logging.getLogger("zmqpipeline.distributor")


def _check_task_class(task_class: type[Task]) -> None:
    if not (isinstance(task_class, type) and issubclass(task_class, Task)):
        raise TypeError(f"register_task() needs a Task subclass, not {task_class!r}")
    for name in ("task_type", "endpoint"):
        if getattr(task_class, name, None) is None:
            raise TypeError(f"{task_class.__name__} has no {name}")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Distributor:
    """Hands out the items of every registered :class:`~zmqpipeline.Task`.

    Register tasks with :meth:`register_task` before constructing it, then call
    :meth:`run`, which blocks until every item is collected (or failed for good), tells
    workers and collector the run is over, and returns a :class:`RunReport`.

    It talks to the collector only at ``collector_ack_endpoint`` (its DEALER to the
    collector's ROUTER); ``collector_endpoint``, where workers push results, is kept for
    the 2014 signature and checked, not connected to.
    """

    _registered: ClassVar[dict[str, type[Task]]] = {}

    @classmethod
    def register_task(cls, task_class: type[Task]) -> type[Task]:
        """Register a :class:`Task` subclass; returns it, so it works as a decorator too."""
        _check_task_class(task_class)
        cls._registered[task_class.task_type] = task_class
        return task_class

    @classmethod
    def clear_registered_tasks(cls) -> None:
        """Forget every registered task (for tests and interactive use)."""
        cls._registered.clear()

    def __init__(
        self,
        collector_endpoint: str,
        collector_ack_endpoint: str,
        receive_metadata: bool = False,
        metadata_endpoint: str | None = None,
        *,
        tasks: list[type[Task]] | None = None,
        settings: Settings | None = None,
        security: Security | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        progress_interval_s: float = 0.5,
        control_endpoint: str | None = None,
        journal: str | os.PathLike[str] | None = None,
        fresh: bool = False,
        push_endpoint: str | None = None,
    ) -> None:
        self.collector_endpoint = EndpointAddress(collector_endpoint)
        self.collector_ack_endpoint = EndpointAddress(collector_ack_endpoint)
        self.receive_metadata = bool(receive_metadata)
        if self.receive_metadata and metadata_endpoint is None:
            raise ConfigurationError(
                "Distributor(receive_metadata=True) needs metadata_endpoint, the address "
                "the MetaDataWorker connects to"
            )
        self.metadata_endpoint = (
            EndpointAddress(metadata_endpoint) if metadata_endpoint is not None else None
        )
        self.task_classes: dict[str, type[Task]]
        if tasks is not None:  # these, not the registry
            for task_class in tasks:
                _check_task_class(task_class)
            self.task_classes = {t.task_type: t for t in tasks}
        else:
            self.task_classes = dict(self._registered)
        if not self.task_classes:
            raise ConfigurationError("no task registered: call Distributor.register_task() first")
        check_dependencies(self.task_classes)
        self.settings = settings or Settings.from_env(security=security)
        self.on_progress = on_progress
        self.progress_interval_s = progress_interval_s
        self.report: RunReport | None = None
        self.drops = DropCounter(logger, "distributor")
        #: Where operators see and steer the run (:mod:`.control`), if anywhere.
        control = control_endpoint or self.settings.control_endpoint
        self.control_endpoint = EndpointAddress(control) if control else None
        #: The journal file (``None``: none; default ``<settings.journal_dir>/distributor.sqlite``):
        #: a run it holds that has not ended is resumed; ``fresh`` starts a new one anyway.
        self.journal = journal
        if journal is None and self.settings.journal_dir:
            self.journal = os.path.join(self.settings.journal_dir, "distributor.sqlite")
        self.fresh = fresh
        #: Where items are pushed into open-ended tasks (:mod:`.push`), if anywhere.
        push = push_endpoint or self.settings.push_endpoint
        self.push_endpoint = EndpointAddress(push) if push else None
        #: Workers the caller started itself (``zmqpipeline run``): once that many were
        #: told the end, no grace is kept for a late one (``settings.end_grace_s``).
        self.expected_workers: int | None = None

    # -- the loop ---------------------------------------------------------------------

    def run(self) -> RunReport:
        """Run the batch to its end and return the report (also kept as ``self.report``)."""
        started = time.monotonic()
        self._first_item_at: float | None = None  # set by _loop, for the report
        self._done_at: float | None = None
        tasks = [cls() for cls in self.task_classes.values()]
        journal, journaled = self._open_journal(tasks)
        if journal is not None and journaled is not None and journaled.complete:
            journal.close(complete=True)
            return self._already_complete(journaled)
        scheduler = Scheduler(
            tasks,
            self.settings,
            run=journaled.run if journaled is not None else random.getrandbits(62) + 1,
        )
        self._resume_metadata: dict[str, Any] | None = None
        try:  # the result cache (zmqpipeline.cache): refused before anything is journaled
            if any(getattr(t, "cache", None) is not None for t in tasks):
                from ..cache.book import open_cache

                scheduler.cache = open_cache(scheduler, COLLECTOR)
        except BaseException:
            if journal is not None:
                journal.close(complete=False)
            raise
        scheduler.recurring.open(self.journal)  # scheduled jobs: kept beside the journal
        if journal is not None:
            scheduler.journal = journal
            if journaled is None:
                journal.begin(scheduler.run, self._task_names(), fingerprints(tasks))
            else:
                journal.adopt(journaled)
                scheduler.resume_from(journaled)
                self._resume_metadata = journaled.metadata
        try:
            self._run(scheduler)
        finally:
            complete = all(s.finished for s in scheduler.tasks.values())
            scheduler.recurring.close()
            scheduler.cache.close(complete)
            scheduler.journal.close(complete=complete)
        ended = time.monotonic()
        first = self._first_item_at or started
        done = self._done_at or ended
        self.report = self._make_report(scheduler, done - first)
        self.report.elapsed_s = ended - started
        if journaled is not None:
            finished = journaled.finished
            self.report.resumed = resume_report(scheduler.run, finished, scheduler.resuming)
            logger.info("resumed run %d: %s", scheduler.run, self.report.resumed)
        if self.report.failed:
            logger.error(
                "run ended with %d failed item(s): %s",
                len(self.report.failed),
                ", ".join(f["item_id"] for f in self.report.failed[:20]),
            )
        logger.info("run finished: %d item(s) collected", self.report.total)
        return self.report

    def _open_journal(
        self, tasks: list[Task]
    ) -> tuple[DistributorJournal | None, JournaledRun | None]:
        """The journal (``None``: none) and the run it holds to go on with (``None``: a
        new run). Refuses a journal written for other tasks, or another definition of
        them (see :mod:`zmqpipeline.journal.fingerprint`)."""
        if self.journal is None:
            return None, None
        journal = DistributorJournal(self.journal)
        journaled = None if self.fresh else journal.load()
        if journaled is None or journaled.complete:
            return journal, journaled
        ours = self._task_names()
        if journaled.tasks != ours:
            journal.close(complete=False)
            raise JournalError(
                f"journal {self.journal} holds run {journaled.run} of tasks {journaled.tasks}, "
                f"not of {ours}: give another journal, or fresh=True (--fresh) to start anew"
            )
        changed = changes(journaled.fingerprint, fingerprints(tasks))
        if journaled.fingerprint and changed:
            journal.close(complete=False)
            raise JournalError(
                f"journal {self.journal} holds run {journaled.run}, written for another "
                f"definition of its tasks ({'; '.join(changed)}): resuming it would "
                "misreport it; give another journal, or fresh=True (--fresh) to start anew"
            )
        logger.warning("resuming run %d from journal %s", journaled.run, self.journal)
        return journal, journaled

    def _task_names(self) -> dict[str, str]:
        return {tt: cls.__name__ for tt, cls in self.task_classes.items()}

    def _already_complete(self, journaled: JournaledRun) -> RunReport:
        logger.warning(
            "run %d in journal %s is already complete: nothing to do (fresh=True, or "
            "--fresh, starts a new run)",
            journaled.run,
            self.journal,
        )
        self.report = RunReport(
            collected=dict(journaled.collected),
            failed=journaled.standing,
            retries=0,
            wall_time_s=0.0,
            aborted=False,
            already_complete=True,
        )
        return self.report

    def _run(self, scheduler: Scheduler) -> None:
        with RoleRuntime("distributor", self.settings, logger) as rt:
            self.drops = rt.drops
            routers: dict[str, zmq.Socket[Any]] = {
                # workers send only control kinds: a frame over that limit ends the link
                endpoint: rt.open(
                    zmq.ROUTER, endpoint, bind=True, max_bytes=protocol.CONTROL_MAX_BYTES
                )
                for endpoint in sorted({t.endpoint for t in self.task_classes.values()})
            }
            identity = b"D" + os.urandom(16)
            collector = rt.open(
                zmq.DEALER, self.collector_ack_endpoint, bind=False, identity=identity
            )
            meta = None
            if self.metadata_endpoint is not None and self.receive_metadata:
                meta = rt.open(zmq.ROUTER, self.metadata_endpoint, bind=True, admit="metadata")
            link = Links(rt, scheduler, routers, collector, meta)
            if self.control_endpoint is not None:
                link.open_control(self.control_endpoint)
            if self.push_endpoint is not None:
                link.open_push(self.push_endpoint)
            self._loop(link)

    def _loop(self, link: Links) -> None:
        scheduler, rt = link.scheduler, link.rt
        interval = self.settings.heartbeat_interval_s
        now = time.monotonic()
        if self._resume_metadata is not None:  # a resumed run keeps its metadata
            scheduler.start(self._resume_metadata, now)
        elif link.meta is None:
            scheduler.start({}, now)
        scheduler.heartbeats()  # the first PING: the collector answers HELLO
        next_beat = now + interval
        next_progress = now + self.progress_interval_s
        waiting = WaitLog(logger, now)
        finished_confirmed = False
        end_deadline: float | None = None
        grace_end = 0.0
        fed_newcomers = False
        while True:
            link.flush(now)
            if scheduler.done:
                if end_deadline is None:
                    self._done_at = now
                    wait = self.settings.end_timeout_s if scheduler.collector_id else 0.0
                    end_deadline = now + wait
                    grace_end = now + self.settings.end_grace_s
                everyone = self.expected_workers is not None and (
                    len(scheduler.told_end) >= self.expected_workers
                )
                if (finished_confirmed and (everyone or now >= grace_end)) or now >= end_deadline:
                    break
            wake = min(next_beat, next_progress, waiting.next_at)
            if end_deadline is not None:
                wake = min(wake, end_deadline if not finished_confirmed else grace_end)
            wake = _next_wake(scheduler, link, now, wake)
            # New workers got their first items: send those (the flush above), read,
            # and fill their windows next without waiting.
            timeout = 0 if fed_newcomers else max(0, int((wake - now) * 1000) + 1)
            events = dict(link.poller.poll(timeout))
            now = time.monotonic()
            finished_confirmed |= link.read(events, now)
            if rt.stop.fd in events and _stop_now(rt, scheduler):
                break
            if now >= next_beat:
                scheduler.tick(now)
                scheduler.heartbeats()
                next_beat = now + interval
            if now >= waiting.next_at:
                what = self._waiting_for(scheduler, now)
                waiting.log(None if what is None else "distributor: " + what, now)
            if now >= next_progress:
                self._progress(scheduler)
                next_progress = now + self.progress_interval_s
            fed_newcomers = scheduler.dispatch(now, newcomers_first=True)
            scheduler.commit_journal(now)
            if self._first_item_at is None and any(s.next_seq for s in scheduler.tasks.values()):
                self._first_item_at = now
        if not finished_confirmed and scheduler.collector_id is not None:
            logger.warning(
                "the collector did not confirm the end of the run within %.1f s",
                self.settings.end_timeout_s,
            )

    def _progress(self, scheduler: Scheduler) -> None:
        if self.on_progress is None:
            return
        try:
            call_user(logger, "on_progress", self.on_progress, scheduler.summary(aborted=False))
        except UserCodeError:
            self.on_progress = None  # logged once; the run goes on without it

    def _waiting_for(self, scheduler: Scheduler, now: float) -> str | None:
        """What the run is waiting for, in words (``None``: it is not waiting)."""
        if not scheduler.started:
            return f"waiting for metadata from a MetaDataWorker at {self.metadata_endpoint}"
        if scheduler.collector_id is None:
            return f"waiting for the collector at {self.collector_ack_endpoint} to answer"
        heard = scheduler.last_hello_at
        if heard is not None and now - heard > self.settings.liveness_s and not scheduler.done:
            return (
                f"the collector at {self.collector_ack_endpoint} has not answered for over "
                f"{self.settings.liveness_s:g} s (the link cut? the collector gone?); "
                "waiting for it"
            )
        for state in scheduler.tasks.values():
            if state.active and not state.workers:
                return (
                    f"task {state.task_type}: waiting for a worker to connect to {state.endpoint}"
                )
        return None

    def _make_report(self, scheduler: Scheduler, wall_time_s: float) -> RunReport:
        summary = scheduler.summary(aborted=not all(s.finished for s in scheduler.tasks.values()))
        latency: dict[str, float] = {}
        if scheduler.latencies:
            samples = list(scheduler.latencies)
            latency = {
                "p50": _percentile(samples, 0.50) * 1000,
                "p90": _percentile(samples, 0.90) * 1000,
                "p99": _percentile(samples, 0.99) * 1000,
            }
        tasks = {tt: dict(t) for tt, t in summary["tasks"].items()}
        for tt, state in scheduler.tasks.items():  # drained: stopped early by an operator
            if state.finished and not state.task.is_complete:
                tasks[tt]["state"] = "drained"
        return RunReport(
            collected=summary["collected"],
            failed=summary["failed"],
            retries=summary["retries"],
            wall_time_s=wall_time_s,
            aborted=summary["aborted"],
            latency_ms=latency,
            per_worker={
                w["id"]: w["handed_out"] - w["handed_back"]
                for w in scheduler.worker_log.values()
                if w["handed_out"] > w["handed_back"]
            },
            tasks=tasks,
            workers=summary["workers"],
            dropped=dict(self.drops.counts),
            ended_by=scheduler.ended_by or "stopped",
            abandoned=[
                f"{tt}/{seq}" for tt, s in scheduler.tasks.items() for seq in sorted(s.in_flight)
            ],
        )


def _stop_now(rt: RoleRuntime, scheduler: Scheduler) -> bool:
    """A stop signal came: the first ends the run early (with its END grace), a second,
    or one after the run's end, stops at once."""
    rt.stop.drain()  # the loop polls it again for the next signal only
    if scheduler.done or rt.stop.count > 1:
        return True
    logger.warning("stop requested: ending the run early")
    scheduler.finish(aborted=True)
    return False


def _next_wake(scheduler: Scheduler, link: Links, now: float, wake: float) -> float:
    """The loop's next wake-up: ``wake``, or sooner for a retry, a queue or a commit."""
    retry_at = scheduler.next_wakeup(now)
    if retry_at is not None:
        wake = min(wake, retry_at)
    if link.collector_queue:
        wake = min(wake, now + 0.05)
    return min(wake, scheduler.journal.next_commit_at() or wake)
