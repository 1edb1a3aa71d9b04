"""``zmqpipeline executor-worker ENDPOINT``: a worker for a :class:`~zmqpipeline.Executor`
on this machine, which runs the functions the executor names (see docs/tutorial/executor.md)."""

from __future__ import annotations

import argparse
from typing import Any

from ..worker.lifetime import add_lifetime_arguments
from .args import add_command

__all__ = ["add_executor_commands"]


#: ``executor-worker``'s arguments (besides the lifetime ones).
_ARGUMENTS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("endpoint",), {"metavar": "ENDPOINT", "help": "the executor's endpoint"}),
    (
        ("--results",),
        {"metavar": "ENDPOINT", "help": "where results go (default: the next tcp port)"},
    ),
    (("--threads",), {"type": int, "default": 1, "metavar": "N", "help": "calls run at once"}),
    (
        ("--allow-module",),
        {
            "action": "append",
            "default": [],
            "metavar": "PKG",
            "dest": "allow",
            "help": "run only functions of this module or package (repeatable; default: any)",
        },
    ),
    (
        ("--prefetch",),
        {
            "type": int,
            "metavar": "N",
            "help": "calls held beyond one per thread (default: what the threads finish "
            "in about 20 ms, 1 to 32)",
        },
    ),
)


def add_executor_commands(sub: Any) -> None:
    """Add ``executor-worker`` to the ``zmqpipeline`` parser's subcommands."""
    parser = add_command(sub, "executor-worker", _cmd_executor_worker)
    for flags, options in _ARGUMENTS:
        parser.add_argument(*flags, **options)
    add_lifetime_arguments(parser)
    parser.add_argument("--parent", type=int, default=None, help=argparse.SUPPRESS)


def _cmd_executor_worker(args: argparse.Namespace) -> int:
    """run a worker for a zmqpipeline.Executor (it calls the functions it is sent)

    Connect to the executor at ENDPOINT (results go to the next tcp port) and call the
    functions it sends, by their import name, until it shuts down. Functions must be
    importable here (PYTHONPATH); --allow-module limits which.
    """
    from ..errors import UsageError
    from ..executor.worker import run_worker

    if args.threads < 1:
        raise UsageError(f"--threads must be at least 1, not {args.threads}")
    if args.prefetch is not None and args.prefetch < 0:
        raise UsageError(f"--prefetch must be at least 0, not {args.prefetch}")
    run_worker(
        args.endpoint,
        results=args.results,
        threads=args.threads,
        allow=args.allow,
        prefetch=args.prefetch,
        parent=args.parent,
        lifetime_s=args.lifetime,
        lifetime_stagger_s=args.lifetime_stagger,
        idle_timeout_s=args.idle_timeout,
    )
    return 0
