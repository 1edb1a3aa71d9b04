"""``zmqpipeline status|pause|resume|drain|stop|retry ENDPOINT``: see and steer a running
pipeline through its distributor's control endpoint (see :mod:`zmqpipeline.distributor.control`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from ..distributor.control import CONTROL_TIMEOUT_S, Control
from ..errors import ControlError
from .args import add_command, client_arguments, client_security, positive_float

__all__ = ["add_control_commands", "format_status", "print_ending"]

_STEER = {
    "pause": "hand out nothing new; items in flight finish and are collected",
    "resume": "hand out again after a pause",
    "drain": "hand out nothing new, end the run once the items in flight are collected",
    "stop": "end the run now; items in flight are abandoned (the report lists them)",
}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("endpoint", metavar="ENDPOINT", help="the distributor's control endpoint")
    client_arguments(parser, CONTROL_TIMEOUT_S, "the reply", "an operator's")


def add_control_commands(sub: Any) -> None:
    """Add the operator commands to the ``zmqpipeline`` parser's subcommands."""
    status = add_command(sub, "status", _cmd_status)
    _common(status)
    status.add_argument("--json", action="store_true", help="the snapshot as JSON")
    status.add_argument(
        "--watch",
        nargs="?",
        type=positive_float,
        const=1.0,
        default=None,
        metavar="SECONDS",
        help="refresh every SECONDS (default 1) until the run ends",
    )
    for name, text in _STEER.items():
        steer = add_command(sub, name, _cmd_steer, help=text)
        _common(steer)
        steer.set_defaults(control_command=name)
    retry = add_command(sub, "retry", _cmd_retry)
    _common(retry)
    retry.add_argument("ids", nargs="*", metavar="ITEM_ID", help="e.g. FIRST/12 (default: all)")


def _control(args: argparse.Namespace) -> Control:
    security = client_security(args.secure, "an operator's")
    return Control(args.endpoint, security, timeout=args.timeout)


def _fail(args: argparse.Namespace, exc: ControlError) -> int:
    print(f"zmqpipeline: {args.endpoint}: {exc}", file=sys.stderr)
    return 1


def _cmd_steer(args: argparse.Namespace) -> int:
    try:
        body = _control(args).call(args.control_command)
    except ControlError as exc:
        return _fail(args, exc)
    print(f"{args.control_command}: the run is {body['state']}")
    return 0


def _cmd_retry(args: argparse.Namespace) -> int:
    """hand items that failed for good out again (all, or those named)

    Ask the distributor at ENDPOINT to hand out again the items that failed for good (all
    of them, or the ITEM_IDs given): each goes out under a new id, and a finished task is
    reopened for it.
    """
    try:
        body = _control(args).retry_failed(args.ids or None)
    except ControlError as exc:
        return _fail(args, exc)
    for entry in body.get("retried", []):
        print(f"{entry['item_id']} goes out again as {entry['new_item_id']}")
    print(f"retry: the run is {body['state']}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    """show a running pipeline's state

    Ask the distributor at ENDPOINT (its control endpoint) for the run's state: per task
    what was collected, failed, is in flight and waits, the workers and the recent
    failures; --watch refreshes it until the run ends.
    """
    control = _control(args)
    out = sys.stdout
    if args.watch is None:
        try:
            status = control.status()
        except ControlError as exc:
            return _fail(args, exc)
        out.write(json.dumps(status, indent=2) + "\n" if args.json else format_status(status))
        return 0
    return _watch(control, args, out)


def _watch(control: Control, args: argparse.Namespace, out: TextIO) -> int:
    """Redraw in place on a terminal; elsewhere one line (or one JSON document) per look."""
    tty = out.isatty() and not args.json
    last: dict[str, Any] | None = None
    while True:
        try:
            status = control.status()
        except ControlError as exc:
            if last is not None:  # it answered before: the run has ended and it has gone
                print(f"the distributor at {args.endpoint} has gone", file=out)
                return 0 if last["state"] == "finished" else 1
            return _fail(args, exc)
        last = status
        if args.json:
            out.write(json.dumps(status) + "\n")
        elif tty:
            out.write("\x1b[H\x1b[J" + format_status(status))
        else:
            out.write(_one_line(status) + "\n")
        out.flush()
        if status["state"] == "finished":
            return 0
        time.sleep(args.watch)  # the refresh period the user asked for


def _one_line(status: dict[str, Any]) -> str:
    tasks = status["tasks"].values()
    rate = sum(t["rate"] or 0.0 for t in tasks)
    return (
        f"{time.strftime('%H:%M:%S')} {status['state']}: "
        f"{sum(t['collected'] for t in tasks)} collected, "
        f"{sum(t['in_flight'] for t in tasks)} in flight, "
        f"{sum(t['failed'] for t in tasks)} failed, {rate:.1f} items/s, "
        f"{len(status['workers'])} worker(s)"
    )


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s ago"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _worker_lines(workers: list[dict[str, Any]]) -> list[str]:
    lines = [f"workers: {len(workers)}"]
    if workers:
        rows = [["id", "task", "threads", "done", "in flight", "heartbeat", "share"]]
        for w in workers:
            rows.append(
                [
                    w["id"],
                    w["task_type"],
                    str(w.get("threads", "-")),
                    str(w["done"]),
                    str(w["in_flight"]),
                    _age(w["heartbeat_age_s"]),
                    f"{w['share']:.0%}",
                ]
            )
        lines += _table(rows)
    return lines


def format_status(status: dict[str, Any]) -> str:
    """The status snapshot as a readable table."""
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status["started_at"]))
    ended = f" ({status['ended_by']})" if status.get("ended_by") else ""
    lines = [f"run {status['run']:x}: {status['state']}{ended}, started {started}"]
    rows = [
        [
            "task",
            "state",
            "handed out",
            "in flight",
            "collected",
            "failed",
            "retries",
            "items/s",
            "ETA",
        ]
    ]
    for name, t in status["tasks"].items():
        size = f"/{t['size']}" if t["size"] is not None else ""
        rate = "-" if t["rate"] is None else f"{t['rate']:.1f}"
        rows.append(
            [
                name,
                t["state"],
                f"{t['handed_out']}{size}",
                str(t["in_flight"]),
                str(t["collected"]),
                str(t["failed"]),
                str(t["retries"]),
                rate,
                _eta(t["eta_s"]),
            ]
        )
    lines += _table(rows)
    lines += _worker_lines(status["workers"])
    c = status["collector"]
    lines.append(
        f"collector: {'connected' if c['connected'] else 'not connected'}, "
        f"last ACK {_age(c['last_ack_age_s'])}"
    )
    if status["failures"]:
        lines.append("recent failures:")
        for f in status["failures"]:
            lines.append(f"  {f['item_id']}  ({f['attempts']} attempt(s)) {f['error']}")
    if status.get("schedule"):  # recurring jobs: the next due (zmqpipeline.cli.schedule)
        from .schedule import next_due_lines

        lines += next_due_lines(status["schedule"])
    if status["dropped"]:
        dropped = ", ".join(f"{k} x{n}" for k, n in sorted(status["dropped"].items()))
        lines.append(f"dropped messages: {dropped}")
    return "\n".join(lines) + "\n"


def print_ending(out: TextIO, report: dict[str, Any]) -> None:
    """For a run report: how an operator (or Ctrl-C) ended the run, if one did."""
    if report.get("ended_by") == "drained":
        print("  drained: nothing new was handed out after the drain", file=out)
    abandoned = report.get("abandoned") or []
    if abandoned:
        shown = ", ".join(abandoned[:20]) + (" ..." if len(abandoned) > 20 else "")
        print(f"  stopped: {len(abandoned)} item(s) in flight abandoned: {shown}", file=out)
