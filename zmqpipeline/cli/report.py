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
    print(
        f"  {'task type':<20} {'collected':>10} {'failed':>7} {'never handed out':>17}",
        file=out,
    )
    tasks = report.get("tasks") or {
        tt: {"collected": n, "failed": 0, "not_handed_out": None}
        for tt, n in report["collected"].items()
    }
    for task_type, t in tasks.items():
        unsent = t.get("not_handed_out")
        shown = "-" if unsent is None else str(unsent)  # "-": the task declares no size
        print(
            f"  {task_type:<20} {t['collected']:>10} {t['failed']:>7} {shown:>17}"
            + ("" if t.get("size") is None else f"  (of {t['size']})")
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
    if t["backlog"]:
        parts.append(f"{t['backlog']} never handed out")
    return "  (" + "; ".join(parts) + ")"


def _print_processes(out: TextIO, report: dict[str, Any], children: list[Child]) -> None:
    """Every process, matched by pid with the workers the distributor saw."""
    seen = {w["pid"]: w for w in report.get("workers", []) if w.get("pid") is not None}
    total = sum(report["collected"].values())
    print("  processes:", file=out)
    for child in sorted(children, key=lambda c: (c.role != "distributor", c.role, c.pid)):
        line = f"    {child.role:<28} pid {child.pid:<7}"
        if child.role.startswith("worker"):
            worker = seen.get(child.pid)
            if worker is None:
                line += " never joined the run"
            else:
                share = 100.0 * worker["collected"] / total if total else 0.0
                line += (
                    f" host {worker['host']}  collected {worker['collected']} "
                    f"({share:.0f}%) of {worker['handed_out']} handed out"
                )
        print(f"{line}  {how_it_ended(child.exitcode)}", file=out)


def print_failures(out: TextIO, report: dict[str, Any]) -> None:
    """One line per entry of ``report['failed']``."""
    for failure in report["failed"]:
        last = _last_line(failure["error"])
        if failure.get("seq") is None:  # the task's own code raised
            where, _, call = str(failure.get("item_id", "")).rpartition("/")[2].partition("#")
            print(
                f"  FAILED {failure['task_type']}: Task.{where or 'handle'}() raised on call "
                f"{call or '?'}: {last}",
                file=out,
            )
            continue
        print(
            f"  FAILED {failure.get('item_id', failure['task_type'])} after "
            f"{failure['attempts']} attempt(s): {last}; data {_short(failure.get('data'))}",
            file=out,
        )


def print_report(
    out: TextIO, path: str, report: dict[str, Any], ok: bool, children: list[Child]
) -> None:
    """The report of one run; ``ok`` is ``RunReport.ok`` (every item collected)."""
    total = sum(report["collected"].values())
    print(f"zmqpipeline run {path}", file=out)
    _print_tasks(out, report)
    seconds = report["wall_time_s"]
    rate = total / seconds if seconds > 0 else 0.0
    print(
        f"  wall time {seconds:.2f} s, {rate:,.1f} items/s, retries {report['retries']}", file=out
    )
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
