"""The closing report of ``zmqpipeline run``: per task, per process, every failure, and the
exit status that goes with it."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any, TextIO

from .control import print_ending

__all__ = [
    "Child",
    "already_complete_line",
    "exit_status",
    "failure_line",
    "how_it_ended",
    "print_failures",
    "print_report",
    "resumed_line",
]

_DATA_CHARS = 60


@dataclass
class Child:
    """One process ``run`` started: its role (``distributor``, ``collector``, ``metadata``,
    ``worker NAME``), pid and exit code (negative: killed by that signal)."""

    role: str
    pid: int
    exitcode: int | None


def how_it_ended(exitcode: int | None) -> str:
    """``exit 0``, ``exit 1``, ``killed by SIGKILL``, or ``still running``."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}"
    return f"exit {exitcode}"


def _failed_ok(child: Child) -> bool:
    return child.exitcode == 0


def exit_status(report: dict[str, Any] | None, ok: bool, children: list[Child]) -> int:
    """0 only if every item of every task was collected and every process exited 0."""
    if report is None or not ok:
        return 1
    return 0 if all(_failed_ok(c) for c in children) else 1


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _DATA_CHARS else text[: _DATA_CHARS - 3] + "..."


def _last_line(error: str) -> str:
    return (error.strip().splitlines() or [""])[-1]


def _print_tasks(out: TextIO, report: dict[str, Any]) -> None:
    """Per task: collected + failed + in flight (abandoned by a stop) + never handed out
    = its size (see :mod:`zmqpipeline.distributor.accounting`)."""
    print(
        f"  {'task type':<20} {'collected':>10} {'failed':>7} {'in flight':>10} "
        f"{'never handed out':>17}",
        file=out,
    )
    tasks = report.get("tasks") or {
        tt: {"collected": n, "failed": 0, "not_handed_out": None}
        for tt, n in report["collected"].items()
    }
    for task_type, t in tasks.items():
        unsent = t.get("not_handed_out")
        shown = "-" if unsent is None else str(unsent)  # "-": the task declares no size
        errors = t.get("errors", 0)
        print(
            f"  {task_type:<20} {t['collected']:>10} {t['failed']:>7} "
            f"{t.get('in_flight', 0):>10} {shown:>17}"
            + ("" if t.get("size") is None else f"  (of {t['size']})")
            + (f"  (+{errors} error(s) of the task's own code)" if errors else "")
            + _stage_note(t)
            + (f"  ({t['cached']} from the cache)" if t.get("cached") else ""),
            file=out,
        )


def _stage_note(t: dict[str, Any]) -> str:
    """A stage's inputs: what it received from its sources, derived, filtered; pushed."""
    if "backlog" not in t:
        return ""
    parts = []
    if t.get("sources"):
        parts.append(
            f"stage fed by {', '.join(t['sources'])}: {t.get('received', 0)} result(s) in, "
            f"{t.get('derived', 0)} item(s) derived, {t.get('filtered', 0)} filtered"
        )
    if t.get("open_ended"):
        parts.append(f"open-ended: {t.get('pushed', 0)} pushed")
    return "  (" + "; ".join(parts) + ")" if parts else ""


def _print_processes(out: TextIO, report: dict[str, Any], children: list[Child]) -> None:
    """Every process, matched by pid with the workers the distributor saw. A worker's
    share is of what this run collected (a resumed run's earlier part is not in it)."""
    seen = {w["pid"]: w for w in report.get("workers", []) if w.get("pid") is not None}
    total = sum(w["collected"] for w in report.get("workers", []))
    print("  processes:", file=out)
    for child in sorted(children, key=lambda c: (c.role != "distributor", c.role, c.pid)):
        line = f"    {child.role:<28} pid {child.pid:<7}"
        if child.role.startswith("worker"):
            worker = seen.get(child.pid)
            if worker is None:
                line += " never joined the run"
            else:
                share = 100.0 * worker["collected"] / total if total else 0.0
                back = worker.get("handed_back", 0)
                line += (
                    f" host {worker['host']}  collected {worker['collected']} "
                    f"({share:.0f}%) of {worker['handed_out']} handed out"
                    + (f", {back} handed back for another worker" if back else "")
                )
        print(f"{line}  {how_it_ended(child.exitcode)}", file=out)


def failure_line(failure: dict[str, Any]) -> str:
    """One failure for good in words. Its item id says what failed: ``TASK/12`` (an
    item), ``TASK/handle#3`` (the task's ``handle`` raised on its 3rd call),
    ``TASK/derive(SRC/5)`` (a stage's ``derive`` raised on the result of ``SRC/5``)."""
    last = _last_line(failure["error"])
    task_type = failure["task_type"]
    item_id = str(failure.get("item_id", ""))
    if failure.get("seq") is not None:
        return (
            f"FAILED {item_id or task_type}{_tries(failure)}: {last}; "
            f"data {_short(failure.get('data'))}"
        )
    rest = item_id[len(task_type) + 1 :] if item_id.startswith(task_type + "/") else item_id
    if rest.startswith("derive(") and rest.endswith(")"):
        return f"FAILED {task_type}: Task.derive() raised on the result of {rest[7:-1]}: {last}"
    where, _, call = rest.partition("#")
    return f"FAILED {task_type}: Task.{where or 'handle'}() raised on call {call or '?'}: {last}"


def _tries(failure: dict[str, Any]) -> str:
    attempts, deaths = failure.get("attempts", 0), failure.get("deaths", 0)
    parts = []
    if attempts:
        parts.append(f"{attempts} attempt(s)")
    if deaths:
        parts.append(f"{deaths} lost worker(s) or time limit(s)")
    return f" after {' and '.join(parts)}" if parts else " (not retried)"


def print_failures(out: TextIO, report: dict[str, Any]) -> None:
    """One line per entry of ``report['failed']`` (see :func:`failure_line`)."""
    for failure in report["failed"]:
        print(f"  {failure_line(failure)}", file=out)


def print_report(
    out: TextIO, path: str, report: dict[str, Any], ok: bool, children: list[Child]
) -> None:
    """The report of one run; ``ok`` is ``RunReport.ok`` (every item collected)."""
    total = sum(report["collected"].values())
    print(f"zmqpipeline run {path}", file=out)
    _print_tasks(out, report)
    seconds = report["wall_time_s"]
    before = sum(t.get("collected_before", 0) for t in (report.get("tasks") or {}).values())
    rate = (total - before) / seconds if seconds > 0 else 0.0  # this run's items only
    print(
        f"  wall time {seconds:.2f} s (first item handed out to last collected), "
        f"{rate:,.1f} items/s, retries {report['retries']}",
        file=out,
    )
    if before:
        print(f"  resumed: {before} item(s) collected before, not in the rate", file=out)
    latency = report.get("latency_ms") or {}
    if latency:
        print(
            "  latency dispatch->ACK: " + ", ".join(f"{k} {v:.1f} ms" for k, v in latency.items()),
            file=out,
        )
    _print_processes(out, report, children)
    print_failures(out, report)
    bad = [c for c in children if not _failed_ok(c)]
    for child in bad:
        print(
            f"  PROCESS FAILED: {child.role} (pid {child.pid}) {how_it_ended(child.exitcode)}",
            file=out,
        )
    print_ending(out, report)
    if report["aborted"]:
        print("  NOT OK: the run was stopped before the end", file=out)
    elif not ok:
        print(f"  NOT OK: {total} items collected, not every item of every task", file=out)
    elif bad:
        print(f"  NOT OK: all {total} items collected, but a process failed", file=out)
    else:
        print(f"  OK: all {total} items collected", file=out)


def resumed_line(resumed: dict[str, Any]) -> str:
    """One line on a run resumed from its journal (``RunReport.resumed``)."""
    skipped = sum(resumed["skipped"].values())
    again = sum(resumed["re_handed_out"].values())
    finished = ", ".join(resumed["tasks_already_finished"]) or "none"
    return (
        f"resumed run {resumed['run']}: {skipped} item(s) skipped as already collected, "
        f"{again} handed out again (in flight at the crash); tasks already finished: {finished}"
    )


def already_complete_line(journal: Any, report: Any) -> str:
    """The one line of a distributor whose journal holds a run that has ended."""
    return (
        f"the run in journal {journal} is already complete ({sum(report.collected.values())} "
        "item(s) collected): nothing to do; --fresh starts a new run"
    )
