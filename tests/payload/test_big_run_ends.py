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
            return {{"i": self.n{to_worker}}}


    class BigWorker(zmqpipeline.SingleThreadedWorker):
        task_type = zmqpipeline.TaskType("BIG")
        endpoint = zmqpipeline.EndpointAddress("ipc:///tmp/zmqpipeline-big/w.ipc")
        collector_endpoint = zmqpipeline.EndpointAddress("ipc:///tmp/zmqpipeline-big/c.ipc")

        def handle_execution(self, data, *args, **kwargs):
            blob = data.get("blob")
            assert blob is None or (bytes(blob[:1]) == bytes([data["i"]]) and len(blob) == SIZE)
            return {{"i": data["i"]{in_result}}}


    class BigCollector(zmqpipeline.Collector):
        endpoint = zmqpipeline.EndpointAddress("ipc:///tmp/zmqpipeline-big/c.ipc")
        ack_endpoint = zmqpipeline.EndpointAddress("ipc:///tmp/zmqpipeline-big/a.ipc")

        def handle_collection(self, data, task_type, msgtype):
            pass
    """
)

#: A big value in the item (to the worker) or in the result (to the collector).
BLOB = ', "blob": bytes([%s]) * SIZE'
IN_RESULT = BLOB % 'data["i"]'


def test_six_items_of_32_mib_with_two_workers_end_five_runs_in_a_row(tmp_path):
    # (`run` rewrites the addresses to ipc files of its own private directory.)
    text = PIPELINE.format(n=6, size=32 * 1024 * 1024, to_worker=BLOB % "self.n", in_result="")
    (tmp_path / "pipeline.py").write_text(text)
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


def test_a_run_of_70_mb_results_ends_and_every_role_exits():
    """Results of 70 MB (over the default message limit, so it is raised for the run):
    the run ends, `run` returns, every process exited by itself."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "pipeline.py"), "w") as out:
            out.write(PIPELINE.format(n=3, size=70_000_000, to_worker="", in_result=IN_RESULT))
        env = {**os.environ, "ZMQPIPELINE_MAX_MESSAGE_BYTES": str(256 * 1024 * 1024)}
        command = [sys.executable, "-m", "zmqpipeline", "run", folder, "--workers", "2"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=90, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "all 3 items collected" in output, output
    assert "did not end within" not in output, output  # no worker needed ending
