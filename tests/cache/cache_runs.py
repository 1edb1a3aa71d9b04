"""Helpers of the cache tests over real processes: a pipeline folder of its own (the
template beside this file and a ``config.json``), run with ``zmqpipeline run`` or role by
role, and what its workers executed and its collector saw."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).with_name("pipeline_template.py")
RUN_TIMEOUT_S = 45


class CachePipeline:
    """One pipeline folder under ``root``; ``cache_dir`` may be shared by several."""

    def __init__(self, root: Path, cache_dir: Path, inputs: list[int], **config: Any) -> None:
        self.root = root
        self.folder = root / "pipe"
        self.folder.mkdir(parents=True)
        shutil.copy(TEMPLATE, self.folder / "pipeline.py")
        self.executed_file = root / "executed.txt"
        self.collected_file = root / "collected.json"
        self.config: dict[str, Any] = {
            "endpoints": {
                name: f"ipc://{root}/{name}.ipc"
                for name in ("square", "plus_one", "results", "ack")
            },
            "cache_dir": str(cache_dir),
            "inputs": inputs,
            "executed": str(self.executed_file),
            "collected": str(self.collected_file),
            **config,
        }
        self.write_config()
        self.runs = 0

    def write_config(self) -> None:
        (self.folder / "config.json").write_text(json.dumps(self.config))

    def edit_worker(self, new_body: str) -> None:
        """Change the worker's source (the line marked ``WORKER_BODY``)."""
        source = (self.folder / "pipeline.py").read_text()
        lines = [
            new_body + "  # WORKER_BODY" if "# WORKER_BODY" in ln else ln
            for ln in source.splitlines()
        ]
        (self.folder / "pipeline.py").write_text("\n".join(lines) + "\n")

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "zmqpipeline", *args]

    def run(self, *extra: str) -> subprocess.CompletedProcess[str]:
        """``zmqpipeline run`` the folder; forget what an earlier run executed."""
        self._reset()
        return subprocess.run(
            self.command("run", str(self.folder), "--quiet", *extra),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            env=_env(),
        )

    def start(self, *extra: str) -> subprocess.Popen[str]:
        self._reset()
        return subprocess.Popen(
            self.command("run", str(self.folder), "--quiet", *extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(),
        )

    def _reset(self) -> None:
        self.runs += 1
        for path in (self.executed_file, self.collected_file):
            path.unlink(missing_ok=True)

    def executed(self) -> list[str]:
        """What the workers ran (``"SQUARE 3"``...), sorted."""
        if not self.executed_file.exists():
            return []
        return sorted(self.executed_file.read_text().split("\n")[:-1])

    def collected(self) -> dict[str, Any]:
        return dict(json.loads(self.collected_file.read_text()))

    def seen(self, task_type: str = "SQUARE") -> list[dict[str, Any]]:
        return [s for s in self.collected()["seen"] if s["task_type"] == task_type]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("ZMQPIPELINE_JOURNAL_DIR", None)
    return env


def squares(values: list[int]) -> list[str]:
    return sorted(f"SQUARE {v}" for v in values)
