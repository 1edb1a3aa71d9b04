"""Who steers a run: a distributor whose control endpoint is tcp without CURVE warns at
start that anyone who reaches it may steer the run, and every command is logged with its
sender (routing id, address, and under CURVE the name of the operator's key). Real
processes: ``zmqpipeline collector``, ``worker`` and ``distributor --control tcp://...``."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.procs import free_port

import zmqpipeline
from zmqpipeline import Control, ControlError, Security
from zmqpipeline.security import (
    ENV_AUTHORIZED_KEYS,
    ENV_SECRET_KEY,
    ENV_SERVER_KEY,
    generate_keys,
)

pytestmark = pytest.mark.timeout(60)

SOURCE = Path(zmqpipeline.__file__).resolve().parents[1]


def _pipeline(folder: Path) -> Path:
    """2 000 items of 10 ms on one worker: long enough to be steered."""
    folder.mkdir()
    (folder / "app.py").write_text(
        textwrap.dedent(f"""
        import zmqpipeline
        zmqpipeline.TaskType.register_type('STEER')
        class SteerTask(zmqpipeline.Task):
            task_type = zmqpipeline.TaskType('STEER')
            endpoint = zmqpipeline.EndpointAddress('tcp://127.0.0.1:{free_port()}')
            n_items = 2000
            n = 0
            def handle(self, data, address, msgtype):
                self.n += 1
                self.is_complete = self.n >= 2000
                return {{'i': self.n}}
        class SteerWorker(zmqpipeline.SingleThreadedWorker):
            task_type = SteerTask.task_type
            endpoint = SteerTask.endpoint
            collector_endpoint = zmqpipeline.EndpointAddress('tcp://127.0.0.1:{free_port()}')
            def handle_execution(self, data, *args, **kwargs):
                import time; time.sleep(0.01)
                return data
        class SteerCollector(zmqpipeline.Collector):
            endpoint = SteerWorker.collector_endpoint
            ack_endpoint = zmqpipeline.EndpointAddress('tcp://127.0.0.1:{free_port()}')
            def handle_collection(self, data, task_type, msgtype):
                pass
    """)
    )
    return folder / "app.py"


def _keys(folder: Path) -> tuple[dict[str, str], dict[str, str], Security]:
    """Server and worker env, and the security of operator ``ana``
    (in ``authorized/operators/``)."""
    server_public, server_secret = generate_keys(folder, "server")
    authorized = folder / "authorized"
    (authorized / "operators").mkdir(parents=True)
    worker_public, worker_secret = generate_keys(folder, "worker1")
    shutil.copy(worker_public, authorized)
    ana_public, ana_secret = generate_keys(folder, "ana")
    shutil.copy(ana_public, authorized / "operators")
    common = {ENV_SERVER_KEY: str(server_public), ENV_AUTHORIZED_KEYS: str(authorized)}
    return (
        {**common, ENV_SECRET_KEY: str(server_secret)},
        {**common, ENV_SECRET_KEY: str(worker_secret)},
        Security(ana_secret, server_public, authorized),
    )


def _steer(tmp_path: Path, secure: bool) -> tuple[str, str]:
    """Run the pipeline, pause and stop it through the control endpoint; the distributor's
    stderr and the control endpoint."""
    app = _pipeline(tmp_path / "app")
    control = f"tcp://127.0.0.1:{free_port()}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("ZMQPIPELINE_CURVE_")}
    base["PYTHONPATH"] = str(SOURCE)
    server_env, client_env, security = (base, base, None)
    if secure:
        server, client, security = _keys(tmp_path / "keys")
        server_env, client_env = {**base, **server}, {**base, **client}
    cmd = [sys.executable, "-m", "zmqpipeline"]
    roles = [
        ([*cmd, "collector", f"{app}:SteerCollector"], server_env),
        ([*cmd, "worker", f"{app}:SteerWorker"], client_env),
        ([*cmd, "distributor", str(app), "--control", control], server_env),
    ]
    processes = [
        subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
        for args, env in roles
    ]
    try:
        operator = Control(control, security)
        deadline = time.monotonic() + 30
        while True:  # until it is bound and has handed out items
            try:
                if operator.status()["tasks"]["STEER"]["collected"] > 0:
                    break
            except ControlError:
                pass
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
        assert operator.pause()["state"] == "paused"
        operator.stop()
        _, err = processes[2].communicate(timeout=30)
        for process in processes[:2]:
            process.communicate(timeout=30)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return err, control


def test_a_plain_tcp_control_endpoint_is_a_warning_and_each_command_names_its_sender(tmp_path):
    err, control = _steer(tmp_path, secure=False)
    assert re.search(
        rf"WARNING control endpoint {re.escape(control)} is tcp without CURVE: any process "
        r"that can reach it \(on this host: any local user\) can pause, drain or stop",
        err,
    ), err
    for command in ("pause", "stop"):
        assert re.search(
            rf"WARNING operator command {command} from peer [0-9a-f]+ at 127\.0\.0\.1: the run is",
            err,
        ), err


def test_under_curve_each_command_names_the_operators_key(tmp_path):
    err, _ = _steer(tmp_path, secure=True)
    assert "without CURVE" not in err, err
    for command in ("pause", "stop"):
        assert re.search(
            rf"operator command {command} from peer [0-9a-f]+ at 127\.0\.0\.1, "
            r"CURVE key operators/ana: the run is",
            err,
        ), err
