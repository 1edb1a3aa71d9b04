"""``Executor.map(..., progress=True)`` in a terminal: a script run on a pseudo-terminal
draws the bar of ``zmqpipeline run`` (counts out of the input's ``len()``, rate, ETA)
while its map runs, and removes it at the end; without a ``len()``, the spinner."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

HERE = Path(__file__).parent


def run_on_a_terminal(program: str) -> str:
    """What ``program`` writes to its terminal (stdout and stderr on one pty)."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    env.pop("ZMQPIPELINE_QUIET", None)
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", program], stdout=slave, stderr=slave, env=env
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the program has ended and closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        try:
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_map_with_progress_draws_a_bar_in_a_terminal() -> None:
    out = run_on_a_terminal(
        textwrap.dedent("""
            import sys
            sys.modules["tqdm"] = None  # the plain bar (tqdm is an optional extra)
            import executor_funcs as f
            from zmqpipeline import Executor
            with Executor(workers=2) as ex:
                values = list(ex.map(f.sleep_then, [0.01] * 150, range(150), progress=True))
            assert values == list(range(150)), values
            print("DONE")
        """)
    )
    frames = [part for part in out.split("\r") if part.strip()]
    bars = [frame for frame in frames if frame.startswith("[") and "/150" in frame]
    assert len(bars) >= 2, out  # redrawn as calls come back
    assert "items/s" in bars[-1] and "ETA" in bars[-1]
    counts = [int(bar.split("/150")[0].rsplit(" ", 1)[1]) for bar in bars]
    assert counts == sorted(counts) and counts[-1] > counts[0]
    assert out.rstrip().endswith("DONE")
    assert "/150" not in out.rsplit("\r", 1)[-1]  # the bar is removed at the end


def test_map_with_progress_over_an_input_without_len_shows_counts() -> None:
    out = run_on_a_terminal(
        textwrap.dedent("""
            import sys
            sys.modules["tqdm"] = None
            import executor_funcs as f
            from zmqpipeline import Executor
            with Executor(workers=1) as ex:
                inputs = (0.01 for _ in range(60))
                assert len(list(ex.map(f.sleep_then, inputs, range(60), progress=True))) == 60
        """)
    )
    assert "collected" in out and "in flight" in out and "/60" not in out
