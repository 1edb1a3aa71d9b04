"""Errors no retry can mend fail their item at once, said in the user's terms: a real
``zmqpipeline run`` whose task hands out an item msgpack cannot carry and whose worker
returns such a result."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import zmqpipeline

pytestmark = pytest.mark.timeout(60)

SOURCE = Path(zmqpipeline.__file__).resolve().parents[1]


def _pipeline(folder: Path) -> Path:
    """Item 3's data holds a set; item 5's result holds one."""
    folder.mkdir()
    (folder / "tasks.py").write_text(
        textwrap.dedent(f"""
        import zmqpipeline
        zmqpipeline.TaskType.register_type('ODD')
        class OddTask(zmqpipeline.Task):
            task_type = zmqpipeline.TaskType('ODD')
            endpoint = zmqpipeline.EndpointAddress('ipc://{folder}/w.ipc')
            n_items = 6
            n = 0
            def handle(self, data, address, msgtype):
                self.n += 1
                self.is_complete = self.n >= 6
                return {{'i': self.n, 'tags': {{'a'}} if self.n == 3 else ['a']}}
        class OddWorker(zmqpipeline.SingleThreadedWorker):
            task_type = zmqpipeline.TaskType('ODD')
            endpoint = zmqpipeline.EndpointAddress('ipc://{folder}/w.ipc')
            collector_endpoint = zmqpipeline.EndpointAddress('ipc://{folder}/c.ipc')
            def handle_execution(self, data, *args, **kwargs):
                return {{'i': data['i'], 'seen': {{1, 2}} if data['i'] == 5 else [1, 2]}}
        class OddCollector(zmqpipeline.Collector):
            endpoint = zmqpipeline.EndpointAddress('ipc://{folder}/c.ipc')
            ack_endpoint = zmqpipeline.EndpointAddress('ipc://{folder}/a.ipc')
            def handle_collection(self, data, task_type, msgtype):
                pass
    """)
    )
    return folder


def test_a_value_msgpack_cannot_carry_fails_its_item_at_once_in_plain_words(tmp_path):
    """It was retried 3 times with back-off, said "at [1][0][1]['payload']['arr']" and
    "after 0 attempt(s)", and the log did not say SerializationError."""
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    result = subprocess.run(
        [sys.executable, "-m", "zmqpipeline", "run", str(_pipeline(tmp_path / "odd"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=45,
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    failed = sorted(line.strip() for line in out.splitlines() if line.strip().startswith("FAILED"))
    assert len(failed) == 2, out
    item, result_line = failed
    assert item.startswith(
        "FAILED ODD/2 (not retried): SerializationError: item ODD/2 of task type 'ODD' cannot "
        "be sent: "
        "the value at ['tags'] is set, which msgpack cannot carry"
    ), item
    assert result_line.startswith(
        "FAILED ODD/4 (not retried): SerializationError: cannot serialize value at ['seen'] (set)"
    ), result_line
    assert "retries 0" in out, out
    assert "[1][0]" not in out and "attempt(s)" not in out, out
    errors = [line for line in result.stderr.splitlines() if "failed for good" in line]
    assert len(errors) == 2 and all("SerializationError" in line for line in errors), errors
