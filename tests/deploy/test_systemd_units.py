"""examples/deploy/systemd: ``systemd-analyze verify`` passes on every unit, quietly.

The units name ``/opt/zmqpipeline/bin/zmqpipeline``, which verify requires to exist; the test
verifies copies whose ExecStart names this interpreter's ``zmqpipeline`` instead (nothing
else changed). verify's exit status is 0 even for unknown keys, so any output fails too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_support import DEPLOY

UNITS = DEPLOY / "systemd"
INSTALLED = "/opt/zmqpipeline/bin/zmqpipeline"
NAMES = sorted(p.name for p in UNITS.iterdir() if p.suffix in (".service", ".timer"))

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="no systemd-analyze (systemd) on this machine"
)


def _verify(folder: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(folder / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def units(tmp_path: Path) -> Path:
    command = str(Path(sys.executable).with_name("zmqpipeline"))
    for unit in UNITS.iterdir():
        if unit.suffix in (".service", ".timer"):
            (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED, command))
    # an instance of the template, as `systemctl enable zmqpipeline-worker@3` makes
    shutil.copy(tmp_path / "zmqpipeline-worker@.service", tmp_path / "zmqpipeline-worker@3.service")
    return tmp_path


def test_the_examples_are_the_four_units() -> None:
    assert NAMES == [
        "zmqpipeline-collector.service",
        "zmqpipeline-distributor.service",
        "zmqpipeline-distributor.timer",
        "zmqpipeline-worker@.service",
    ]


@pytest.mark.parametrize("name", [*NAMES, "zmqpipeline-worker@3.service"])
def test_systemd_analyze_verify_passes(units: Path, name: str) -> None:
    done = _verify(units, name)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_would_say_so_of_a_broken_unit(units: Path) -> None:
    """The check above can fail: the worker's unit with a misspelt key and a bad type."""
    text = (units / "zmqpipeline-worker@.service").read_text()
    broken = text.replace("Type=exec", "Type=exe").replace("RestartSec=", "RestartSecs=")
    (units / "broken.service").write_text(broken)
    done = _verify(units, "broken.service")
    assert "Failed to parse service type" in done.stderr
    assert "Unknown key 'RestartSecs'" in done.stderr


def test_every_variable_the_units_use_is_in_the_environment_file() -> None:
    defined = {
        line.split("=", 1)[0]
        for line in (UNITS / "zmqpipeline.env").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    used = set()
    for name in NAMES:
        text = (UNITS / name).read_text()
        assert "EnvironmentFile=/etc/zmqpipeline/zmqpipeline.env" in text or name.endswith(".timer")
        used |= set(re.findall(r"\$\{(\w+)\}", text))
    assert used and used <= defined, used - defined
