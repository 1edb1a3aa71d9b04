"""What ``zmqpipeline slurm env`` reads from a job's SLURM_* variables (pure functions;
the real job is tests/deploy/test_slurm_job.py)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from zmqpipeline.cli.slurm import expand_nodelist, port_base, tasks_per_node
from zmqpipeline.errors import UsageError


@pytest.mark.parametrize(
    ("nodelist", "names"),
    [
        ("vm", ["vm"]),
        ("node[01-03,7],gpu5", ["node01", "node02", "node03", "node7", "gpu5"]),
        ("a[1-2]-ib[3-4]", ["a1-ib3", "a1-ib4", "a2-ib3", "a2-ib4"]),
        ("n[009-011]", ["n009", "n010", "n011"]),
    ],
)
def test_expand_nodelist_as_scontrol_show_hostnames(nodelist: str, names: list[str]) -> None:
    assert expand_nodelist(nodelist) == names


@pytest.mark.parametrize(
    ("nodelist", "says"),
    [("n[1-", "unclosed '['"), ("n[a-b]", "'a-b' is not a number"), ("n[5-2]", "backwards")],
)
def test_bad_nodelist_names_the_part(nodelist: str, says: str) -> None:
    with pytest.raises(UsageError, match=re.escape(says)):
        expand_nodelist(nodelist)


def test_tasks_per_node_and_ports_from_the_job() -> None:
    assert tasks_per_node({"SLURM_NTASKS_PER_NODE": "8"}) == 8
    assert tasks_per_node({"SLURM_TASKS_PER_NODE": "4(x2),3"}) == 4
    assert tasks_per_node({}) == 1
    assert port_base({"SLURM_JOB_ID": "4001"}) == 20003
    assert port_base({"SLURM_JOB_ID": "4001"}) + 2 < 32768  # below the ephemeral ports


def test_outside_a_job_the_command_says_so() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "zmqpipeline", "slurm", "env"],
        env={"PATH": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "SLURM_JOB_NODELIST is not set: run this inside a Slurm job" in done.stderr
