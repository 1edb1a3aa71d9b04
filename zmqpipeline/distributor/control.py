"""Operating a running pipeline: see it and steer it from anywhere.

The distributor answers commands on one more socket, its *control endpoint* (a ROUTER it
binds; under CURVE it admits only keys of the ``operators`` role). A command is one
CONTROL message, answered at once by one CONTROL_REPLY (see :mod:`zmqpipeline.protocol`).

:class:`ControlLogic` turns a command and the :class:`~zmqpipeline.distributor.scheduler.Scheduler`
into a reply, with no socket in sight; the distributor feeds it. :class:`Control` is the
client (also behind ``zmqpipeline status|pause|resume|drain|stop|retry ENDPOINT``)::

    from zmqpipeline import Control
    Control("ipc:///tmp/run/control.ipc").status()["state"]     # 'running'
    Control("tcp://host:5560").drain()                          # {'state': 'draining', ...}

Commands: ``status``; ``pause`` (hand out nothing, in-flight items finish and are
collected; a paused run is held open even when everything is done); ``resume``;
``drain`` (hand out nothing new, end the run once in-flight items are collected; the
report counts what was never handed out); ``stop`` (end now, in-flight items abandoned);
``retry_failed`` (``{"ids": [...]}`` or all: items that failed for good go out again).
A command that makes no sense in the run's state gets an error reply.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

import zmq

from .. import protocol
from ..errors import ControlError
from ..runtime.runtime import RequestClient, RoleRuntime
from ..schedule.commands import SCHEDULE_COMMANDS
from ..schedule.commands import answer as schedule_answer
from .accounting import task_counts
from .latency import LatencyHistogram, percentiles_ms

if TYPE_CHECKING:
    from .scheduler import Scheduler

__all__ = ["COMMANDS", "CONTROL_TIMEOUT_S", "Control", "ControlLogic", "run_state"]

logger = logging.getLogger("zmqpipeline.control")

#: How long a :class:`Control` call waits for its reply.
CONTROL_TIMEOUT_S = 3.0
#: Failures a status snapshot lists (the most recent ones).
RECENT_FAILURES = 20
#: Workers a status snapshot describes (the live ones first).
MAX_WORKERS_SHOWN = 1000
#: Lost workers (declared dead, or gone) a status snapshot still lists, the latest ones.
MAX_LOST_SHOWN = 100

COMMANDS = ("status", "pause", "resume", "drain", "stop", "retry_failed")


def run_state(s: Scheduler) -> str:
    """The run's state in words: ``waiting for metadata|collector|workers``, ``running``,
    ``paused``, ``draining`` or ``finished``."""
    if s.done:
        return "finished"
    if not s.started:
        return "waiting for metadata"
    if s.collector_id is None:
        return "waiting for collector"
    if s.draining:
        return "draining"
    if s.paused:
        return "paused"
    if any(t.active and not t.workers for t in s.tasks.values()):
        return "waiting for workers"
    return "running"


def _task_state(s: Scheduler, task_type: str) -> str:
    state = s.tasks[task_type]
    if state.finished:
        return "finished" if state.task.is_complete else "drained"
    if not state.active:
        return "waiting for dependencies" if s.started else "waiting for metadata"
    if s.paused or s.draining:
        return "paused" if s.paused else "draining"
    return "running" if state.workers else "waiting for workers"


def _rate(s: Scheduler, task_type: str, now: float) -> float | None:
    """Items/s over the last samples (one per heartbeat, up to 10 s); ``None`` before 1 s
    and while paused (nothing is handed out: no rate, no ETA). A resume starts the
    window again, so the pause does not drag the rate down after it."""
    samples = s.rates[task_type]
    if not samples or s.paused:
        return None
    t0, c0 = samples[0]
    if now - t0 < 1.0:
        return None
    return (s.tasks[task_type].collected - c0) / (now - t0)


def _tasks(s: Scheduler, now: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for tt, state in s.tasks.items():
        counts = task_counts(s, tt)
        rate = _rate(s, tt, now)
        left = None
        if counts.not_handed_out is not None:
            left = counts.not_handed_out + counts.in_flight
        eta = None
        if left == 0:
            eta = 0.0
        elif left is not None and rate:
            eta = left / rate
        out[tt] = {
            "state": _task_state(s, tt),
            **counts.as_dict(),
            "retries": state.retries,
            "rate": rate,
            "eta_s": eta,
            **s.stages.summary(tt),  # a stage's sources and backlog (.stages)
        }
    return out


def _workers(s: Scheduler, now: float) -> list[dict[str, Any]]:
    done = {tt: max(1, st.collected) for tt, st in s.tasks.items()}
    live = []
    for state in s.tasks.values():
        for w in state.workers.values():
            entry = s.worker_log.get(w.wid, {})
            live.append(
                {
                    "id": entry.get("id", w.wid.decode(errors="replace")),
                    "host": entry.get("host"),
                    "pid": entry.get("pid"),
                    "task_type": w.task_type,
                    "threads": w.threads,
                    "capacity": w.capacity,  # threads + prefetch: what it asked to hold
                    "done": entry.get("collected", 0),
                    "in_flight": len(w.held),
                    "heartbeat_age_s": max(0.0, now - w.last_seen),
                    "share": entry.get("collected", 0) / done[w.task_type],
                    "lost": None,
                }
            )
    lost = [e for wid, e in s.worker_log.items() if e.get("lost") and wid not in s.workers]
    for entry in lost[-MAX_LOST_SHOWN:]:
        live.append(
            {
                **{k: entry[k] for k in ("id", "host", "pid", "task_type")},
                "threads": None,
                "capacity": None,
                "done": entry["collected"],
                "in_flight": 0,
                "heartbeat_age_s": None,
                "share": entry["collected"] / done.get(entry["task_type"], 1),
                "lost": entry["lost"],  # why: "worker died", "worker went away", ...
            }
        )
    return live[:MAX_WORKERS_SHOWN]


def _failures(s: Scheduler) -> list[dict[str, Any]]:
    recent = [f for state in s.tasks.values() for f in state.failed[-RECENT_FAILURES:]]
    return [
        {
            "item_id": f["item_id"],
            "error": (f["error"].strip().splitlines() or [""])[-1][:500],
            "attempts": f["attempts"],
            "deaths": f["deaths"],
        }
        for f in recent[-RECENT_FAILURES:]
    ]


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else max(0.0, now - then)


class ControlLogic:
    """Answers operator commands from the scheduler's own counters (nothing is counted
    per item for it: a status costs one walk over tasks and workers). Socket-free: the
    distributor gives it decoded :class:`~zmqpipeline.protocol.Control` records."""

    def __init__(self, scheduler: Scheduler, endpoint: str, drops: Any = None) -> None:
        self.scheduler = scheduler
        self.endpoint = endpoint
        self.drops = drops  # a DropCounter: its counts show in the status
        self.started_at = time.time()
        self.commands = 0
        self._extra: dict[str, Any] = {}  # what a command adds to its reply
        self.latency = LatencyHistogram()  # built as statuses are read

    def handle(
        self, msg: protocol.Control, now: float, sender: str = ""
    ) -> tuple[bool, dict[str, Any]]:
        """``(ok, body)`` for one command; an error is ``(False, {"error", "state"})``.
        Each command is logged with ``sender`` (who sent it, see :mod:`.operators`): one
        that steers the run at WARNING, a refused one at INFO, a status at DEBUG."""
        self.commands += 1
        ok, body = self._handle(msg, now)
        who = f" from {sender}" if sender else ""
        if not ok:
            logger.info("operator command %s%s refused: %s", msg.command, who, body["error"])
        elif msg.command == "status":
            logger.debug("operator command status%s", who)
        else:
            retried = len(body.get("retried", ()))
            what = f"{retried} item(s) go out again, " if msg.command == "retry_failed" else ""
            logger.warning(
                "operator command %s%s: %sthe run is %s",
                msg.command,
                who,
                what,
                body.get("state", run_state(self.scheduler)),
            )
        return ok, body

    def _handle(self, msg: protocol.Control, now: float) -> tuple[bool, dict[str, Any]]:
        s = self.scheduler
        if msg.command in SCHEDULE_COMMANDS:  # recurring jobs: zmqpipeline.schedule.commands
            return schedule_answer(s.recurring, msg.command, msg.args, now)
        method = getattr(self, "_" + msg.command, None) if msg.command in COMMANDS else None
        if method is None:
            return self._error(f"unknown command {msg.command!r} (one of {', '.join(COMMANDS)})")
        if msg.command not in ("status",) and s.done:
            return self._error(f"the run has ended ({s.ended_by}): nothing to {msg.command}")
        self._extra = {}
        reason = method(msg.args, now)
        if reason:
            return self._error(reason)
        if msg.command == "status":
            return True, self.status(now)
        return True, {"state": run_state(s), **self._extra}

    def _error(self, reason: str) -> tuple[bool, dict[str, Any]]:
        return False, {"error": reason, "state": run_state(self.scheduler)}

    # Each command returns an error text, or "" when done.

    def _status(self, args: dict[str, Any], now: float) -> str:
        return ""

    def _pause(self, args: dict[str, Any], now: float) -> str:
        s = self.scheduler
        if s.draining or s.paused:
            return f"the run is {run_state(s)} already: nothing to pause"
        s.paused = True
        return ""

    def _resume(self, args: dict[str, Any], now: float) -> str:
        if not self.scheduler.paused:
            return f"the run is {run_state(self.scheduler)}, not paused: nothing to resume"
        for samples in self.scheduler.rates.values():
            samples.clear()  # the rate starts again: the pause is not in its window
        self.scheduler.resume(now)
        return ""

    def _drain(self, args: dict[str, Any], now: float) -> str:
        if self.scheduler.draining:
            return "the run is draining already"
        self.scheduler.drain(now)
        return ""

    def _stop(self, args: dict[str, Any], now: float) -> str:
        self.scheduler.finish(aborted=True)
        return ""

    def _retry_failed(self, args: dict[str, Any], now: float) -> str:
        s = self.scheduler
        ids = args.get("ids")
        if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
            return "retry_failed: ids must be a list of item ids such as 'TASK/12'"
        if s.draining:
            return "the run is draining: no item goes out again"
        entries = [(st, f) for st in s.tasks.values() for f in st.failed if f["seq"] is not None]
        if ids is not None:
            known = {f["item_id"] for _, f in entries}
            unknown = [i for i in ids if i not in known]
            if unknown:
                return "not failed items (or not re-runnable): " + ", ".join(unknown[:20])
            entries = [(st, f) for st, f in entries if f["item_id"] in set(ids)]
        if not entries:
            return "no failed item to retry"
        retried = []
        for state, entry in entries:
            seq = s.redrive(state, entry, now)
            retried.append({"item_id": entry["item_id"], "new_item_id": f"{state.task_type}/{seq}"})
        s.dispatch(now)
        self._extra = {"retried": retried}
        return ""

    def status(self, now: float) -> dict[str, Any]:
        """The snapshot ``Control.status()`` returns (documented in the operating guide)."""
        s = self.scheduler
        self.latency.update(s.latencies, sum(t.collected for t in s.tasks.values()))
        return {
            "run": s.run,
            "state": run_state(s),
            "ended_by": s.ended_by or None,
            "started_at": self.started_at,
            "uptime_s": time.time() - self.started_at,
            "paused": s.paused,
            "draining": s.draining,
            "tasks": _tasks(s, now),
            "workers": _workers(s, now),
            "collector": {
                "connected": s.collector_id is not None,
                "last_ack_age_s": _age(now, s.last_ack_at),
                "last_hello_age_s": _age(now, s.last_hello_at),
            },
            "failures": _failures(s),
            "latency_ms": percentiles_ms(s.latencies),  # of the latest items collected
            "latency": self.latency.snapshot(),
            "dropped": dict(self.drops.counts) if self.drops is not None else {},
            # scheduled tasks: their jobs and the next due (zmqpipeline.schedule)
            **({"schedule": s.recurring.upcoming(now)} if s.recurring.books else {}),
        }


# -- the client -------------------------------------------------------------------------


class Control(RequestClient):
    """Operate the run whose distributor answers at ``endpoint``.

    Each call opens its own socket, sends one command, waits at most ``timeout`` seconds
    for the reply and returns it as a plain dict. Raises :class:`ControlError` when no
    reply comes (unreachable, or our key is not an operator's) or the command is refused.
    ``security``: CURVE keys for a tcp endpoint (default: ``ZMQPIPELINE_CURVE_*``, if set).
    """

    reply_kind = protocol.CONTROL_REPLY
    default_timeout_s = CONTROL_TIMEOUT_S
    error = ControlError
    no_reply_hint = "no distributor there, or it does not admit our key as an operator's"

    def status(self) -> dict[str, Any]:
        """A snapshot of the run: state, per task, per worker, the collector, failures."""
        return self.call("status")

    def pause(self) -> dict[str, Any]:
        """Hand out nothing new; items in flight finish and are collected."""
        return self.call("pause")

    def resume(self) -> dict[str, Any]:
        return self.call("resume")

    def drain(self) -> dict[str, Any]:
        """Hand out nothing new, end the run cleanly once in-flight items are collected."""
        return self.call("drain")

    def stop(self) -> dict[str, Any]:
        """End the run now; items in flight are abandoned (the report lists them)."""
        return self.call("stop")

    def retry_failed(self, ids: list[str] | None = None) -> dict[str, Any]:
        """Hand items that failed for good out again (all, or those ``ids`` such as
        ``'TASK/12'``); the reply's ``retried`` maps each to its new item id."""
        return self.call("retry_failed", {} if ids is None else {"ids": list(ids)})

    def call(self, command: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send ``command`` and return the reply's body; see :class:`Control`."""
        if self.endpoint.scheme == "ipc" and not self.endpoint.location.startswith("@"):
            if not os.path.exists(self.endpoint.location):
                raise ControlError(f"no distributor at {self.endpoint}: no such file")
        request_id = int.from_bytes(os.urandom(8), "big") >> 2
        frames = self._codec.control(request_id, command, args or {})
        with RoleRuntime("operator", self.settings, logger) as rt:
            sock = rt.open(zmq.DEALER, self.endpoint, bind=False)
            sock.setsockopt(zmq.LINGER, 0)
            reply: protocol.ControlReply = self._exchange(rt, sock, request_id, frames)
        if not reply.ok:
            state = reply.body.get("state")
            raise ControlError(f"{command} refused: {reply.body.get('error')}", state)
        return reply.body
