"""``zmqpipeline schedule set|unset|load|list|statuses|tell ENDPOINT ...``: see and change
the recurring jobs of a running pipeline through its distributor's control endpoint (see
:mod:`zmqpipeline.schedule.commands`)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from datetime import datetime
from typing import Any

from ..distributor.control import CONTROL_TIMEOUT_S, Control
from ..errors import ControlError, UsageError
from ..schedule.rules import BadRule, local_zone, parse_time
from ..schedule.task import read_jobs_csv
from .args import add_command, client_arguments, client_security

__all__ = ["add_schedule_command", "format_time", "next_due_lines"]

_LOAD_BATCH = 200  # jobs per schedule_load command (a control message is small)


def format_time(t: float | None) -> str:
    """``t`` (seconds since the epoch) in local ISO 8601, ``-`` for ``None``."""
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, local_zone()).isoformat(timespec="seconds")


def _time(text: str) -> float:
    try:
        return parse_time(text, local_zone())
    except BadRule as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("endpoint", metavar="ENDPOINT", help="the distributor's control endpoint")
    parser.add_argument(
        "--task", metavar="TASK_TYPE", help="the scheduled task (needed if the run has several)"
    )
    client_arguments(parser, CONTROL_TIMEOUT_S, "the reply", "an operator's")


def add_schedule_command(sub: Any) -> None:
    """Add ``schedule`` and its sub-commands to the ``zmqpipeline`` parser."""
    schedule = add_command(sub, "schedule", _cmd_help)
    inner = schedule.add_subparsers(dest="schedule_command", metavar="SUBCOMMAND")
    set_ = add_command(inner, "set", _cmd_set)
    _common(set_)
    set_.add_argument("job", metavar="JOB_ID")
    set_.add_argument(
        "rule", metavar="RULE", help="NOW, AT:ISO-8601, CONTINUE, STOP, an RRULE or a cron rule"
    )
    set_.add_argument("--data", metavar="JSON", help="the job's own data, a JSON object")
    set_.add_argument(
        "--after", metavar="TIME", type=_time, help="count the rule from TIME (ISO 8601)"
    )
    set_.add_argument(
        "--job-timeout",
        type=float,
        metavar="SECONDS",
        help="this job's own timeout (default: the schedule's timeout_s)",
    )
    unset = add_command(inner, "unset", _cmd_unset)
    _common(unset)
    unset.add_argument("job", metavar="JOB_ID")
    load = add_command(inner, "load", _cmd_load)
    _common(load)
    load.add_argument("csv", metavar="CSV", help="JOB_ID,RULE[,DATA_JSON] lines")
    listing = add_command(inner, "list", _cmd_list)
    _common(listing)
    statuses = add_command(inner, "statuses", _cmd_statuses)
    _common(statuses)
    statuses.add_argument("--before", metavar="TIME", type=_time, help="only statuses older")
    statuses.add_argument("--json", action="store_true", help="JSON instead of CSV")
    tell = add_command(inner, "tell", _cmd_tell)
    _common(tell)
    tell.add_argument("job", metavar="JOB_ID")


def _cmd_help(args: argparse.Namespace) -> int:
    """see and change the recurring jobs of a running pipeline

    set, unset, load (a CSV), list, statuses (CSV or JSON) and tell (one job, JSON),
    through the distributor's control endpoint.
    """
    raise UsageError("schedule: give a sub-command (set, unset, load, list, statuses, tell)")


def _call(args: argparse.Namespace, command: str, body: dict[str, Any]) -> dict[str, Any] | None:
    if args.task:
        body["task_type"] = args.task
    security = client_security(args.secure, "an operator's")
    control = Control(args.endpoint, security, timeout=args.timeout)
    try:
        return control.call(command, body)
    except ControlError as exc:
        print(f"zmqpipeline: {args.endpoint}: {exc}", file=sys.stderr)
        return None


def _cmd_set(args: argparse.Namespace) -> int:
    """set a job's rule (a new job, or a new rule for one)"""
    body: dict[str, Any] = {"job": args.job, "rule": args.rule}
    if args.data is not None:
        try:
            body["data"] = json.loads(args.data)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--data: not JSON: {exc}") from None
    if args.after is not None:
        body["after"] = args.after
    if args.job_timeout is not None:
        body["timeout_s"] = args.job_timeout
    reply = _call(args, "schedule_set", body)
    if reply is None:
        return 1
    job = reply["job"]
    error = f" ({job['last_error']})" if job["last_error"] else ""
    print(f"{job['job']}: {job['status']}{error}, next run {format_time(job['next_run'])}")
    return 0 if job["status"] != "bad rule" else 1


def _cmd_unset(args: argparse.Namespace) -> int:
    """remove a job (a run in flight finishes; nothing follows)"""
    reply = _call(args, "schedule_unset", {"job": args.job})
    if reply is None:
        return 1
    print(f"{args.job}: unset")
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    """set the jobs of a CSV file of JOB_ID,RULE[,DATA_JSON] lines"""
    try:
        jobs = [[job, rule, data] for job, (rule, data) in read_jobs_csv(args.csv).items()]
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    total = 0
    for i in range(0, len(jobs), _LOAD_BATCH):
        reply = _call(args, "schedule_load", {"jobs": jobs[i : i + _LOAD_BATCH]})
        if reply is None:
            return 1
        total += reply["set"]
    print(f"{total} job(s) set from {args.csv}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    """list the jobs and their rules (CSV: JOB_ID,RULE)"""
    reply = _call(args, "schedule_list", {})
    if reply is None:
        return 1
    out = csv.writer(sys.stdout, lineterminator="\n")
    for job, rule in reply["jobs"]:
        out.writerow([job, rule])
    return 0


def _cmd_statuses(args: argparse.Namespace) -> int:
    """every job's last status with its time (CSV, or --json)

    One line per job: JOB_ID,STATUS,AT,NEXT_RUN,LAST_ERROR, times in local ISO 8601;
    --before TIME keeps the jobs whose status is older (those fallen out of circulation).
    """
    body = {} if args.before is None else {"before": args.before}
    reply = _call(args, "schedule_statuses", body)
    if reply is None:
        return 1
    statuses = reply["statuses"]
    if args.json:
        print(json.dumps(statuses, indent=2))
        return 0
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["job_id", "status", "at", "next_run", "last_error"])
    for s in statuses:
        when, due = format_time(s["at"]), format_time(s["next_run"])
        out.writerow([s["job"], s["status"], when, due, s["last_error"] or ""])
    return 0


def _cmd_tell(args: argparse.Namespace) -> int:
    """one job as JSON: rule, status, next run, last error, its last runs"""
    reply = _call(args, "schedule_tell", {"job": args.job})
    if reply is None:
        return 1
    print(json.dumps(reply["job"], indent=2))
    return 0


def next_due_lines(schedule: dict[str, Any], now: float | None = None) -> list[str]:
    """For ``zmqpipeline status``: each scheduled task's next due jobs."""
    now = time.time() if now is None else now
    lines = []
    for task_type, s in schedule.items():
        nexts = ", ".join(f"{n['job']} in {max(0.0, n['at'] - now):.1f} s" for n in s["next"][:5])
        lines.append(
            f"schedule {task_type}: {s['jobs']} job(s), {s['running']} running"
            + (f"; next: {nexts}" if nexts else "")
        )
    return lines
