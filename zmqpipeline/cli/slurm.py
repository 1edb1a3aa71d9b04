"""Inside a Slurm job: where the head roles run and how many workers each node starts.

``zmqpipeline slurm env`` prints shell ``export`` lines for a job script to ``eval``::

    ZMQPIPELINE_SLURM_HEAD           the job's first node (runs the batch script)
    ZMQPIPELINE_SLURM_HEAD_ADDRESS   its address on the network the job's other nodes reach
    ZMQPIPELINE_SLURM_NODES          nodes in the job
    ZMQPIPELINE_SLURM_TASKS_PER_NODE tasks (worker processes) per node on the first node
    ZMQPIPELINE_SLURM_PORT_BASE      the first of three ports chosen from the job id, so
                                     two jobs sharing a node do not collide

The node list comes from ``scontrol show hostnames`` when it is on PATH, else from
:func:`expand_nodelist` (Slurm's ``name[01-03,7]`` notation).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from ..errors import UsageError
from .args import add_command

__all__ = [
    "PORT_BASE_FIRST",
    "add_slurm_command",
    "expand_nodelist",
    "head_address",
    "job_nodes",
    "port_base",
    "slurm_env",
    "tasks_per_node",
]

#: Ports of job ``J`` are ``PORT_BASE_FIRST + (J % _PORT_SLOTS) * 3`` and the two after it.
PORT_BASE_FIRST = 20000
_PORT_SLOTS = 4000  # up to port 31999: below Linux's ephemeral ports (32768-60999)
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def expand_nodelist(nodelist: str) -> list[str]:
    """``"node[01-03,7],gpu5"`` -> ``["node01", "node02", "node03", "node7", "gpu5"]``.

    Zero padding is kept from the range's first number. Raises ``UsageError`` naming
    the part it cannot read.
    """
    names: list[str] = []
    for part in _split_top(nodelist):
        names += _expand_one(part, nodelist)
    return names


def _split_top(text: str) -> list[str]:
    """Split at commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def _expand_one(part: str, whole: str) -> list[str]:
    if "[" not in part:
        if "]" in part:
            raise UsageError(f"node list {whole!r}: unbalanced ']' in {part!r}")
        return [part]
    prefix, _, rest = part.partition("[")
    inside, closed, suffix = rest.partition("]")
    if not closed:
        raise UsageError(f"node list {whole!r}: unclosed '[' in {part!r}")
    names: list[str] = []
    for piece in inside.split(","):
        match = _RANGE.match(piece.strip())
        if match is None:
            raise UsageError(f"node list {whole!r}: {piece!r} is not a number or a range")
        first, last = match.group(1), match.group(2) or match.group(1)
        if int(last) < int(first):
            raise UsageError(f"node list {whole!r}: range {piece!r} runs backwards")
        width = len(first)
        for number in range(int(first), int(last) + 1):
            for tail in _expand_one(suffix, whole) if suffix else [""]:
                names.append(f"{prefix}{number:0{width}d}{tail}")
    return names


def job_nodes(env: Mapping[str, str]) -> list[str]:
    """The job's nodes, in Slurm's order (the first runs the batch script)."""
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise UsageError("SLURM_JOB_NODELIST is not set: run this inside a Slurm job")
    if shutil.which("scontrol"):
        done = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode == 0 and done.stdout.split():
            return done.stdout.split()
    return expand_nodelist(nodelist)


def tasks_per_node(env: Mapping[str, str]) -> int:
    """Tasks on the first node: ``SLURM_NTASKS_PER_NODE``, else the first count of
    ``SLURM_TASKS_PER_NODE`` (``"4(x2),3"`` -> 4), else 1."""
    fixed = env.get("SLURM_NTASKS_PER_NODE", "")
    if fixed.isdigit():
        return int(fixed)
    match = re.match(r"^(\d+)", env.get("SLURM_TASKS_PER_NODE", ""))
    return int(match.group(1)) if match else 1


def port_base(env: Mapping[str, str]) -> int:
    """The first of the job's three ports (see :data:`PORT_BASE_FIRST`)."""
    job = env.get("SLURM_JOB_ID", "")
    if not job.isdigit():
        raise UsageError("SLURM_JOB_ID is not set: run this inside a Slurm job")
    return PORT_BASE_FIRST + (int(job) % _PORT_SLOTS) * 3


def head_address(nodes: list[str]) -> str:
    """The head node's address that the other nodes reach: the local address of the
    route towards the second node (a UDP socket's connect sends nothing), or, in a
    one-node job, the head's name resolved."""
    head = nodes[0]
    try:
        own = socket.gethostbyname(head)
    except OSError as exc:
        raise UsageError(f"cannot resolve the head node {head!r}: {exc}") from None
    if len(nodes) < 2:
        return own
    try:
        other = socket.gethostbyname(nodes[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((other, 9))
            return str(probe.getsockname()[0])
    except OSError as exc:
        raise UsageError(f"no route from {head} to node {nodes[1]}: {exc}") from None


def slurm_env(env: Mapping[str, str]) -> dict[str, str]:
    """The ``ZMQPIPELINE_SLURM_*`` values for the job ``env`` describes."""
    nodes = job_nodes(env)
    return {
        "ZMQPIPELINE_SLURM_HEAD": nodes[0],
        "ZMQPIPELINE_SLURM_HEAD_ADDRESS": head_address(nodes),
        "ZMQPIPELINE_SLURM_NODES": str(len(nodes)),
        "ZMQPIPELINE_SLURM_TASKS_PER_NODE": str(tasks_per_node(env)),
        "ZMQPIPELINE_SLURM_PORT_BASE": str(port_base(env)),
    }


def add_slurm_command(subparsers: Any) -> None:
    """Add ``slurm env`` to the ``zmqpipeline`` parser's subcommands."""
    slurm = add_command(subparsers, "slurm", _cmd_slurm)
    slurm.add_argument("what", choices=["env"], help="what to print")


def _cmd_slurm(args: argparse.Namespace) -> int:
    """inside a Slurm job: the head node, its address, tasks per node, ports

    Inside a Slurm job, print `export` lines for the job script to eval:
    ZMQPIPELINE_SLURM_HEAD (the first node), ZMQPIPELINE_SLURM_HEAD_ADDRESS (its address
    towards the other nodes), ZMQPIPELINE_SLURM_NODES, ZMQPIPELINE_SLURM_TASKS_PER_NODE and
    ZMQPIPELINE_SLURM_PORT_BASE (three ports from the job id). Example:
    eval "$(zmqpipeline slurm env)".
    """
    for name, value in slurm_env(os.environ).items():
        print(f"export {name}={shlex.quote(value)}")
    sys.stdout.flush()
    return 0
