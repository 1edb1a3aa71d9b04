"""``zmqpipeline keys DIR [--name NAME] [--role ROLE]``: write a CURVE key pair for secured tcp."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from ..security import (
    ROLES,
    default_key_name,
    generate_keys,
)
from .args import add_command

__all__ = ["add_security_commands"]


def add_security_commands(subparsers: Any) -> None:
    """Add the ``keys`` command to the ``zmqpipeline`` parser's subcommands."""
    keys = add_command(subparsers, "keys", _cmd_keys)
    keys.add_argument("directory", metavar="DIR", help="where to write the pair (made 0700 if new)")
    keys.add_argument(
        "--name",
        default=default_key_name(),
        help="file name without suffix (default: this host's name)",
    )
    keys.add_argument("--force", action="store_true", help="replace an existing pair of that name")
    keys.add_argument(
        "--role",
        choices=ROLES,
        help="also authorise the public key for ROLE: copy it into DIR/authorized/ROLE/ "
        "(workers, metadata, distributor, operators, clients, serviceworkers)",
    )


def _cmd_keys(args: argparse.Namespace) -> int:
    """write a CURVE key pair (NAME.key public, NAME.key_secret secret) for secured tcp

    Write a CURVE key pair in ZeroMQ's certificate format: DIR/NAME.key (public: copy it to
    the machines that must trust this one) and DIR/NAME.key_secret (mode 0600: it stays
    here). Roles use them through ZMQPIPELINE_CURVE_SECRET_KEY, ZMQPIPELINE_CURVE_SERVER_KEY
    and ZMQPIPELINE_CURVE_AUTHORIZED_KEYS; see docs/security.md.
    """
    public, secret = generate_keys(args.directory, args.name, overwrite=args.force)
    print(f"public key  {public}")
    print(f"secret key  {secret}  (mode 0600: keep it on this machine)")
    if args.role:
        folder = Path(args.directory) / "authorized" / args.role
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(public, folder / public.name)
        print(f"authorised  {folder / public.name}  (role {args.role})")
    return 0
