"""`zmqpipeline run` returns when its run has ended, even if a worker never heard the END
(stopped by SIGSTOP, or cut off from the distributor): it says so and ends that worker."""

from __future__ import annotations

import pytest
from support.cli import write_pipeline, zmqpipeline

pytestmark = pytest.mark.timeout(90)


def test_run_ends_a_worker_stopped_past_the_end_of_the_run(tmp_path):
    folder = write_pipeline(tmp_path / "job", n_items=40)
    worker, mark = folder / "worker.py", tmp_path / "stopped"
    # The first worker to reach item 20 stops itself (SIGSTOP): it never sends that
    # result nor hears the END; it is dead to the distributor a liveness period later.
    stop_at_20 = (
        "def handle_execution(self, data, *args, **kwargs):\n"
        "        import os, signal\n"
        f"        if data['i'] == 20 and not os.path.exists({str(mark)!r}):\n"
        f"            open({str(mark)!r}, 'w').close()\n"
        "            os.kill(os.getpid(), signal.SIGSTOP)"
    )
    worker.write_text(
        worker.read_text().replace("def handle_execution(self, data, *args, **kwargs):", stop_at_20)
    )
    fast = {"ZMQPIPELINE_HEARTBEAT_INTERVAL_S": "0.2"}  # a stopped worker is dead in 1 s
    result = zmqpipeline("run", str(folder), "--workers", "2", timeout=80, env=fast)
    out = result.stdout + result.stderr
    assert mark.exists(), out
    assert "did not end within" in out and "ending it" in out, out
    assert "COLLECTED " + str(list(range(1, 41))) in out, out
    assert result.returncode == 0, out
