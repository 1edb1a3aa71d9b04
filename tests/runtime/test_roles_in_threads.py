"""Roles started as threads of one Python process: an inproc:// endpoint, which cannot join
roles that each have their own ZeroMQ context, is refused with the reason; one SIGTERM
ends the process, whichever thread each role runs in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from zmqpipeline import ConfigurationError, Distributor, EndpointAddress, Task, TaskType

pytestmark = pytest.mark.timeout(60)

TaskType.register_type("RT_A")


def test_an_inproc_endpoint_is_refused_with_the_reason():
    class Inproc(Task):
        task_type = TaskType("RT_A")
        endpoint = EndpointAddress("inproc://work")

        def handle(self, data, address, msgtype):
            self.is_complete = True
            return {}

    dist = Distributor("inproc://results", "inproc://acks", tasks=[Inproc])
    with pytest.raises(ConfigurationError, match=r"inproc://.*cannot work.*use ipc://"):
        dist.run()


SCRIPT = """
import sys, threading, time
import zmqpipeline as zp

zp.TaskType.register_type("RT_T")
base = sys.argv[1]

class Endless(zp.Task):
    task_type = zp.TaskType("RT_T")
    endpoint = zp.EndpointAddress(f"ipc://{base}/w.ipc")
    def handle(self, data, address, msgtype):
        return {}

class W(zp.SingleThreadedWorker):
    task_type = zp.TaskType("RT_T")
    endpoint = zp.EndpointAddress(f"ipc://{base}/w.ipc")
    collector_endpoint = zp.EndpointAddress(f"ipc://{base}/c.ipc")
    def handle_execution(self, data, *args, **kwargs):
        time.sleep(0.01)
        return {}

class C(zp.Collector):
    endpoint = zp.EndpointAddress(f"ipc://{base}/c.ipc")
    ack_endpoint = zp.EndpointAddress(f"ipc://{base}/a.ipc")
    def handle_collection(self, data, task_type, msgtype):
        if not getattr(self, "said", False):
            self.said = True
            print("COLLECTING", flush=True)

dist = zp.Distributor(C.endpoint, C.ack_endpoint, tasks=[Endless])
threads = [threading.Thread(target=dist.run), threading.Thread(target=W().run)]
for t in threads:
    t.start()
C().run()  # the main thread's role
for t in threads:
    t.join()
print("ENDED", flush=True)
"""


def test_one_sigterm_ends_a_process_whose_roles_run_in_threads(tmp_path):
    script = tmp_path / "threads.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "ZMQPIPELINE_HEARTBEAT_INTERVAL_S": "0.2"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "COLLECTING"  # the run is under way
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0 and "ENDED" in out, (proc.returncode, out)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
