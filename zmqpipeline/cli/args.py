"""Small pieces every command of ``zmqpipeline`` uses to declare itself."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["add_command"]


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
    first, _, rest = inspect.cleandoc(handler.__doc__ or "").partition("\n")
    help = help or first.rstrip(".")
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
