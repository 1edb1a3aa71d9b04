"""``zmqpipeline request`` against a real service: the reply printed, bad input refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from support.paths import ROOT


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "zmqpipeline", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.mark.timeout(90)
def test_cli_request_prints_the_reply_and_rejects_bad_input(procs, svc, tmp_path):
    module = tmp_path / "cli_workers.py"
    module.write_text(
        "import os, zmqpipeline\n"
        "zmqpipeline.TaskType.register_type('UPPER')\n"
        f"FRONTEND_ENDPOINT = {svc.front!r}\n"
        f"BACKEND_ENDPOINT = {svc.back!r}\n"
        "class Upper(zmqpipeline.ServiceWorker):\n"
        "    task_type = 'UPPER'\n"
        f"    endpoint = {svc.back!r}\n"
        "    def handle_message(self, data, task_type, msgtype):\n"
        "        return {'message': data['message'].upper()}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "zmqpipeline"]
    service = subprocess.Popen(
        [*cmd, "service", str(module)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    worker = subprocess.Popen(
        [*cmd, "serviceworker", f"{module}:Upper"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        done = _cli("request", svc.front, "UPPER", '{"message": "hello"}')
        assert (done.returncode, json.loads(done.stdout)) == (0, {"message": "HELLO"})
        done = _cli("request", svc.front, "UPPER", '[{"message": "a"}, {"message": "b"}]')
        assert json.loads(done.stdout) == [{"message": "A"}, {"message": "B"}]
        done = _cli("request", svc.front, "UPPER", '{"other": 1}')
        assert done.returncode == 1 and "KeyError" in done.stderr
        for bad in (
            ("request", svc.front, "UPPER", "{not json"),
            ("request", "tcp:/nowhere", "UPPER", "{}"),
            ("request", svc.front, "", "{}"),
            ("serviceworker", f"{module}:Missing"),
            ("serviceworker", "no_such_module_here:Upper"),
            ("service",),
        ):
            done = _cli(*bad)
            assert done.returncode == 2, (bad, done.stderr)
            assert len(done.stderr.strip().splitlines()) == 1, (bad, done.stderr)
            assert "Traceback" not in done.stderr
        service.send_signal(signal.SIGINT)
        assert service.wait(15) == 0
        assert worker.wait(15) == 0  # told to stop by the service
    finally:
        for process in (service, worker):
            if process.poll() is None:
                process.kill()
            process.wait(5)
            assert process.returncode is not None
