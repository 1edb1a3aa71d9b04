"""What one ZeroMQ send costs right after the process slept, against in a tight loop.

A worker executing 10 ms items wakes from user code before every send; on a virtual
machine the first system calls after such a wake-up are far slower than in a busy loop,
and every pipeline, bare pyzmq or zmqpipeline, pays that per item. This measures it: a
PUSH socket sends a 40-byte message to a PULL socket in a child process over ipc, after
``time.sleep(0.01)``, after 10 ms of spinning, and back to back.

    python benchmarks/wakeup.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time

import zmq

SENDS = 200


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def main() -> None:
    directory = tempfile.mkdtemp(prefix="zmqpipeline-wakeup-")
    endpoint = f"ipc://{directory}/sink.ipc"
    modes = {
        "after time.sleep(0.01)": time.sleep,
        "after 10 ms spinning": spin,
        "back to back": None,
    }
    pid = os.fork()
    if pid == 0:  # the sink
        ctx = zmq.Context()
        sink = ctx.socket(zmq.PULL)
        sink.bind(endpoint)
        for _ in range(SENDS * len(modes) + 1):
            sink.recv()
        os._exit(0)
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(endpoint)
    push.send(b"hello")  # waits until the sink is there
    try:
        print(f"one zmq send of 40 bytes over ipc, {SENDS} sends each (median, mean)")
        for name, pause in modes.items():
            took = []
            for _ in range(SENDS):
                if pause is not None:
                    pause(0.01)
                started = time.perf_counter()
                push.send(b"x" * 40)
                took.append(time.perf_counter() - started)
            print(
                f"  {name:<24} {statistics.median(took) * 1e6:7.1f} us "
                f"{statistics.mean(took) * 1e6:7.1f} us"
            )
    finally:
        os.waitpid(pid, 0)
        push.close(linger=1000)
        ctx.term()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
