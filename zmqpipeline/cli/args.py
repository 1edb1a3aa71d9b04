"""Small pieces every command of ``zmqpipeline`` uses to declare itself."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import UsageError
from ..security import Security

__all__ = [
    "ADDERS",
    "add_command",
    "client_arguments",
    "client_security",
    "command_of",
    "positive_float",
]

#: The commands each module of ``zmqpipeline.cli`` adds, by its function that adds them:
#: a command line builds the parser of its own command alone (each module imports what
#: its commands need: the service, the cache, CURVE's key tools...), every one only for
#: ``--help`` or a command not known here (tests/cli/test_main.py checks
#: this table against the whole parser).
ADDERS = {
    "service": ("service", "add_service_commands"),
    "serviceworker": ("service", "add_service_commands"),
    "request": ("service", "add_service_commands"),
    "keys": ("keys", "add_security_commands"),
    "status": ("control", "add_control_commands"),
    "pause": ("control", "add_control_commands"),
    "resume": ("control", "add_control_commands"),
    "drain": ("control", "add_control_commands"),
    "stop": ("control", "add_control_commands"),
    "retry": ("control", "add_control_commands"),
    "push": ("push", "add_push_commands"),
    "close": ("push", "add_push_commands"),
    "schedule": ("schedule", "add_schedule_command"),  # recurring jobs
    "check": ("check", "add_check_command"),
    "slurm": ("slurm", "add_slurm_command"),
    "dashboard": ("dashboard", "add_dashboard_commands"),
    "metrics": ("dashboard", "add_dashboard_commands"),
    "executor-worker": ("executor", "add_executor_commands"),
    "cache": ("cache", "add_cache_command"),
}


def command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option of the
    ``zmqpipeline`` parser itself (``--log-level LEVEL``, ``--version``); ``None`` if there
    is none, or if ``-h`` comes first (the help lists every command)."""
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help"):
            return None
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def add_command(
    sub: Any,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    help: str | None = None,
    description: str | None = None,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """A sub-command ``name`` run by ``handler``. Its ``--help`` comes from the handler's
    docstring: the first line is the command's one-line help, the rest its description
    (the first line again, as a sentence, if there is no more); ``help`` and
    ``description`` override them."""
    first, _, rest = (handler.__doc__ or "").strip().partition("\n")
    help = help or first.strip().rstrip(".")
    if not help:
        raise TypeError(f"command {name!r}: {handler.__name__} has no docstring to show in --help")
    rest = " ".join(rest.split())
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=description or rest or help[0].upper() + help[1:] + ".",
        **kwargs,
    )
    parser.set_defaults(handler=handler)
    return parser


def client_arguments(
    parser: argparse.ArgumentParser, timeout_s: float, waits_for: str, whose: str
) -> None:
    """``--timeout`` and ``--secure``, as every client command takes them."""
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=timeout_s,
        help=f"seconds to wait for {waits_for} (default {timeout_s:g})",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help=f"require CURVE (a tcp endpoint): the ZMQPIPELINE_CURVE_* variables name {whose} "
        "key pair and the server's public key",
    )


def client_security(secure: bool, whose: str) -> Security | None:
    """The CURVE keys of a client command (``--secure`` insists on them)."""
    security = Security.from_env()
    if secure and security is None:
        raise UsageError(
            "--secure needs the ZMQPIPELINE_CURVE_SECRET_KEY and ZMQPIPELINE_CURVE_SERVER_KEY "
            f"variables ({whose} key pair, the server's public key)"
        )
    return security


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value
