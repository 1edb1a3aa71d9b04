"""Small pieces every command of ``zmqpipeline`` uses to declare itself."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["add_command"]


def add_command(
    sub: Any,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    help: str,
    description: str | None = None,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """A sub-command ``name`` run by ``handler``; its description defaults to its help."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=description or help[0].upper() + help[1:] + ".",
        **kwargs,
    )
    parser.set_defaults(handler=handler)
    return parser
