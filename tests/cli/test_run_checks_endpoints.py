"""`zmqpipeline run` refuses, before starting anything, a worker pointed elsewhere than its
task or its collector, naming both classes and the addresses the user wrote."""

from __future__ import annotations

import pytest
from support.cli import write_pipeline, zmqpipeline

pytestmark = pytest.mark.timeout(60)


def test_a_worker_whose_endpoint_is_not_its_tasks_is_refused_by_name(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=5)
    worker = folder / "worker.py"
    worker.write_text(
        worker.read_text().replace(
            "endpoint = zmqpipeline.EndpointAddress(settings.WORKER_ENDPOINT)",
            "endpoint = zmqpipeline.EndpointAddress('ipc:///tmp/elsewhere.ipc')",
        )
    )
    result = zmqpipeline("run", str(folder), timeout=20)
    assert result.returncode == 2, result.stdout + result.stderr
    said = result.stderr
    assert "JobWorker.endpoint is ipc:///tmp/elsewhere.ipc" in said, said
    assert f"JobTask (CLI_JOB) is served at ipc://{folder}/w.ipc" in said, said


def test_a_worker_whose_collector_endpoint_is_not_the_collectors_is_refused(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=5)
    worker = folder / "worker.py"
    worker.write_text(
        worker.read_text().replace(
            "EndpointAddress(settings.COLLECTOR_ENDPOINT)",
            "EndpointAddress('ipc:///tmp/nocollector.ipc')",
        )
    )
    result = zmqpipeline("run", str(folder), timeout=20)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "JobWorker.collector_endpoint is ipc:///tmp/nocollector.ipc" in result.stderr
    assert "JobCollector.endpoint is tcp://127.0.0.1:" in result.stderr
