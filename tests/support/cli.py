"""The ``zmqpipeline`` command run as a subprocess, and a small pipeline folder for it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from support.paths import ROOT
from support.procs import free_port


def zmqpipeline(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 45,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "zmqpipeline", *args],
        input=stdin,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_pipeline(
    folder: Path, n_items: int = 30, poison: int | None = None, collector_port: int | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    port = collector_port or free_port()
    (folder / "settings.py").write_text(
        textwrap.dedent(f"""
        import zmqpipeline
        TASK_TYPE = 'CLI_JOB'
        zmqpipeline.TaskType.register_type(TASK_TYPE)
        WORKER_ENDPOINT = 'ipc://{folder}/w.ipc'
        COLLECTOR_ENDPOINT = 'tcp://127.0.0.1:{port}'
        ACK_ENDPOINT = 'tcp://127.0.0.1:{free_port()}'
    """)
    )
    (folder / "tasks.py").write_text(
        textwrap.dedent(f"""
        import settings, zmqpipeline
        class JobTask(zmqpipeline.Task):
            task_type = zmqpipeline.TaskType(settings.TASK_TYPE)
            endpoint = zmqpipeline.EndpointAddress(settings.WORKER_ENDPOINT)
            n = 0
            def handle(self, data, address, msgtype):
                self.n += 1
                if self.n >= {n_items}:
                    self.is_complete = True
                return {{'i': self.n}}
    """)
    )
    (folder / "worker.py").write_text(
        textwrap.dedent(f"""
        import settings, zmqpipeline
        class JobWorker(zmqpipeline.SingleThreadedWorker):
            task_type = zmqpipeline.TaskType(settings.TASK_TYPE)
            endpoint = zmqpipeline.EndpointAddress(settings.WORKER_ENDPOINT)
            collector_endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ENDPOINT)
            def handle_execution(self, data, *args, **kwargs):
                if data['i'] == {poison!r}:
                    raise ValueError('poisoned item')
                return {{'i': data['i']}}
    """)
    )
    (folder / "collector.py").write_text(
        textwrap.dedent("""
        import settings, zmqpipeline
        class JobCollector(zmqpipeline.Collector):
            endpoint = zmqpipeline.EndpointAddress(settings.COLLECTOR_ENDPOINT)
            ack_endpoint = zmqpipeline.EndpointAddress(settings.ACK_ENDPOINT)
            seen = []
            def handle_collection(self, data, task_type, msgtype):
                self.seen.append(data['i'])
            def handle_finished(self, data, task_type):
                print('COLLECTED', sorted(self.seen))
    """)
    )
    return folder


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, text)
    path.write_text(text.replace(old, new))
