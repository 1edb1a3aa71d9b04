"""The sbatch script of examples/deploy/slurm, submitted to a real Slurm cluster.

The cluster is this machine: munge, slurmctld and slurmd from Debian's packages, set up by
``.ci/slurm.sh`` (root only). Without it the test skips and says why. Slurm has no event to
await from outside, so the test polls ``squeue`` (every 0.2 s, within a deadline).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from deploy_support import APP, DEPLOY, make_keys

SCRIPT = DEPLOY / "slurm" / "zmqpipeline.sbatch"
ITEMS = 300
JOB_LIMIT_S = 90


def _cluster_missing() -> str | None:
    if os.geteuid() != 0:
        return "the Slurm test needs root (.ci/slurm.sh starts a one-machine cluster)"
    for command in ("sbatch", "squeue", "scontrol", "sinfo"):
        if shutil.which(command) is None:
            return f"no {command}: install slurm-wlm and run .ci/slurm.sh"
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    if done.returncode != 0 or not {"idle", "mixed"} & set(done.stdout.split()):
        said = done.stdout.strip() or done.stderr.strip()
        return f"no idle Slurm node (sinfo: {said}): run .ci/slurm.sh"
    return None


def _job_state(job: str) -> dict[str, str]:
    done = subprocess.run(
        ["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=20
    )
    return dict(re.findall(r"(\w+)=(\S*)", done.stdout))


@pytest.mark.timeout(JOB_LIMIT_S + 30)
def test_sbatch_script_collects_every_item_once_and_completes(tmp_path: Path) -> None:
    reason = _cluster_missing()
    if reason:
        pytest.skip(reason)
    keys = make_keys(tmp_path / "keys")
    record = tmp_path / "collected.txt"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ZMQPIPELINE_CURVE")},
        "ZMQPIPELINE": str(Path(sys.executable).with_name("zmqpipeline")),
        "DEPLOY_APP": str(APP),
        "DEPLOY_KEYS": str(keys.folder),
        "DEPLOY_ITEMS": str(ITEMS),
        "DEPLOY_ITEM_S": "0.01",
        "DEPLOY_RECORD": str(record),
    }
    submitted = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--chdir={tmp_path}",
            f"--output={tmp_path}/job-%j.out",
            str(SCRIPT),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().split(";")[0]
    try:
        deadline = time.monotonic() + JOB_LIMIT_S
        while _job_state(job).get("JobState") in (
            "PENDING",
            "RUNNING",
            "CONFIGURING",
            "COMPLETING",
        ):
            assert time.monotonic() < deadline, (
                f"job {job} still {_job_state(job)} after {JOB_LIMIT_S} s"
            )
            time.sleep(0.2)
        queued = subprocess.run(
            ["squeue", "-h", "-j", job], capture_output=True, text=True, timeout=20
        )
        assert job not in queued.stdout
    finally:
        subprocess.run(["scancel", job], capture_output=True, timeout=20)
    state = _job_state(job)
    output = (tmp_path / f"job-{job}.out").read_text()
    assert (state.get("JobState"), state.get("ExitCode")) == ("COMPLETED", "0:0"), output
    counts = Counter(int(line) for line in record.read_text().split())
    assert sorted(counts) == list(range(ITEMS)), output
    assert set(counts.values()) == {1}, f"collected more than once: {counts.most_common(3)}"
    assert f"report: collected {ITEMS} of {ITEMS} items ({ITEMS} distinct, 0 twice)" in output
    assert f"collected {{'SLEEP': {ITEMS}}}, failed 0" in output  # the distributor's line
    assert "by 2 workers" in output
