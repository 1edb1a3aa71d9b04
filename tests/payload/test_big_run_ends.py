"""A run of big items ends: every worker hears the end whatever was on the wire, and
``zmqpipeline run`` returns (issue 30: 6 items of 32 MiB with 2 workers hung in 2 of 3 runs,
a worker never hearing END). Real `zmqpipeline run` processes over ipc."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(300)

PIPELINE = textwrap.dedent(
    """
    import zmqpipeline

    zmqpipeline.TaskType.register_type("BIG")
    N, SIZE = {n}, {size}


    class BigTask(zmqpipeline.Task):
        task_type = zmqpipeline.TaskType("BIG")
        endpoint = zmqpipeline.EndpointAddress("ipc:///tmp/zmqpipeline-big/w.ipc")

        def initialize(self, metadata=None):
            self.n = 0

        def handle(self, data, address, msgtype):
            self.n += 1
            self.is_complete = self.n >= N
            return {{"i": self.n, "blob": bytes([self.n]) * SIZE}}


    class BigWorker(zmqpipeline.SingleThreadedWorker):
        task_type = zmqpipeline.TaskType("BIG")
        endpoint = zmqpipeline.EndpointAddress("ipc:///tmp/zmqpipeline-big/w.ipc")
        collector_endpoint = zmqpipeline.EndpointAddress("ipc:///tmp/zmqpipeline-big/c.ipc")

        def handle_execution(self, data, *args, **kwargs):
            assert bytes(data["blob"][:1]) == bytes([data["i"]]) and len(data["blob"]) == SIZE
            return {{"i": data["i"]}}


    class BigCollector(zmqpipeline.Collector):
        endpoint = zmqpipeline.EndpointAddress("ipc:///tmp/zmqpipeline-big/c.ipc")
        ack_endpoint = zmqpipeline.EndpointAddress("ipc:///tmp/zmqpipeline-big/a.ipc")

        def handle_collection(self, data, task_type, msgtype):
            pass
    """
)


def test_six_items_of_32_mib_with_two_workers_end_five_runs_in_a_row(tmp_path):
    # (`run` rewrites the addresses to ipc files of its own private directory.)
    (tmp_path / "pipeline.py").write_text(PIPELINE.format(n=6, size=32 * 1024 * 1024))
    command = [sys.executable, "-m", "zmqpipeline", "run", str(tmp_path), "--workers", "2"]
    for attempt in range(5):
        run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            output, _ = run.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            run.terminate()  # SIGTERM: `run` ends every process of its pipeline
            try:
                output, _ = run.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                run.kill()
                output, _ = run.communicate()
            pytest.fail(f"run {attempt + 1} of 5 did not end in 45 s:\n{output}")
        assert run.returncode == 0, f"run {attempt + 1}:\n{output}"
        assert "all 6 items collected" in output
