"""``zmqpipeline push ENDPOINT TASK_TYPE [JSON]`` and ``zmqpipeline close ENDPOINT TASK_TYPE``:
feed an open-ended task of a running pipeline from outside (see
:mod:`zmqpipeline.distributor.push`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from ..distributor.push import PUSH_BATCH_ITEMS, PUSH_TIMEOUT_S, Pusher
from ..errors import PushError, UsageError
from .args import add_command, client_arguments, client_security

__all__ = ["add_push_commands", "read_items"]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("endpoint", metavar="ENDPOINT", help="the distributor's push endpoint")
    parser.add_argument("task_type", metavar="TASK_TYPE", help="an open-ended task type")
    client_arguments(parser, PUSH_TIMEOUT_S, "each reply, and for room", "a client's")


def add_push_commands(sub: Any) -> None:
    """Add ``push`` and ``close`` to the ``zmqpipeline`` parser's subcommands."""
    push = add_command(sub, "push", _cmd_push)
    _common(push)
    push.add_argument("json", nargs="?", metavar="JSON", help='one item, e.g. \'{"url": "x"}\'')
    push.add_argument("--close", action="store_true", help="then close the task's stream")
    close = add_command(sub, "close", _cmd_close)
    _common(close)


def _pusher(args: argparse.Namespace) -> Pusher:
    return Pusher(args.endpoint, client_security(args.secure, "a client's"), timeout=args.timeout)


def _item(text: str, where: str) -> dict[str, Any]:
    try:
        item = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where}: not JSON: {exc}") from None
    except RecursionError:
        raise UsageError(f"{where}: nested too deeply to read as JSON") from None
    if not isinstance(item, dict):
        raise UsageError(f"{where}: an item must be a JSON object, not {type(item).__name__}")
    return item


def read_items(source: TextIO) -> Iterator[list[dict[str, Any]]]:
    """JSON lines (blank lines skipped) in batches; a bad line is a UsageError naming it."""
    batch: list[dict[str, Any]] = []
    for number, line in enumerate(source, 1):
        if line.strip():
            batch.append(_item(line, f"line {number}"))
            if len(batch) >= PUSH_BATCH_ITEMS:
                yield batch
                batch = []
    if batch:
        yield batch


def _cmd_push(args: argparse.Namespace) -> int:
    """push items into an open-ended task of a running pipeline

    Push one item (a JSON object) or, without JSON, one JSON object per line of standard
    input, into an open-ended task; each is acknowledged once the distributor has taken it.
    """
    pusher = _pusher(args)
    total = 0
    try:
        if args.json is not None:
            total = pusher.push(args.task_type, _item(args.json, "JSON"))
        else:
            for batch in read_items(sys.stdin):
                total += pusher.push_many(args.task_type, batch)
        if args.close:
            pusher.close(args.task_type)
    except PushError as exc:
        print(f"zmqpipeline: {args.endpoint}: {exc} ({total} pushed)", file=sys.stderr)
        return 1
    closed = ", stream closed" if args.close else ""
    print(f"pushed {total} item(s) into {args.task_type}{closed}")
    return 0


def _cmd_close(args: argparse.Namespace) -> int:
    """close an open-ended task's stream: it finishes once its items are collected"""
    try:
        _pusher(args).close(args.task_type)
    except PushError as exc:
        print(f"zmqpipeline: {args.endpoint}: {exc}", file=sys.stderr)
        return 1
    print(f"closed {args.task_type}: it finishes once its items are collected")
    return 0
