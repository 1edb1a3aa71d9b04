"""What the hostile-peer tests share: the peak memory of every role, a peer that joins as
a worker to learn the run number, msgpack bombs built byte by byte, and a collector that
records how many results it refused as forged."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from types import SimpleNamespace
from typing import Any

import zmq

from support.pipelines import make_collector
from zmqpipeline import protocol

__all__ = [
    "FRESH_ROLE_MIB",
    "HwmWatch",
    "as_if_fresh",
    "counting_collector",
    "curve_client",
    "inherited_mib",
    "join_as_worker",
    "logging_to",
    "nested_bomb",
    "read_text",
    "vm_rss_mib",
    "wait_for_log",
]

MIB = 1024 * 1024


def vm_hwm_mib(pid: int, field: str = "VmHWM") -> float | None:
    """The peak resident memory of process ``pid`` so far (VmHWM), in MiB."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def vm_rss_mib(pid: int) -> float | None:
    """The resident memory of process ``pid`` now (VmRSS), in MiB."""
    return vm_hwm_mib(pid, "VmRSS")


#: What a role holds once started in a fresh interpreter (measured: 35-39 MiB).
FRESH_ROLE_MIB = 40.0


def inherited_mib() -> float:
    """What a process forked from this one starts with: this one's resident memory (the
    shared pages count in the child's RSS too). A test process that ran many tests before
    may hold 200 MiB; a fresh role holds :data:`FRESH_ROLE_MIB`."""
    return vm_rss_mib(os.getpid()) or 0.0


def as_if_fresh(mib: float, inherited: float) -> float:
    """A forked role's memory as if it had started fresh: what it holds beyond what it
    inherited at the fork, plus what a fresh role holds."""
    return max(mib - inherited, 0.0) + FRESH_ROLE_MIB


class HwmWatch:
    """Reads every started process's VmHWM (a peak the kernel keeps: nothing between two
    reads is missed) every 50 ms while it lives; :meth:`stop` returns the peaks, each as if
    its role had started fresh (:func:`as_if_fresh`: the roles are forked from the test
    process, whose size depends on the tests that ran in it before)."""

    def __init__(self, procs: Any, skip: tuple[str, ...] = ("attacker",)) -> None:
        self.procs = procs
        self.skip = skip
        self.inherited = inherited_mib()
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def read(self) -> dict[str, float]:
        for name, process in list(self.procs.started.items()):
            if name.startswith(self.skip) or process.pid is None:
                continue
            hwm = vm_hwm_mib(process.pid)
            if hwm is not None:
                self.peak[name] = max(self.peak.get(name, 0.0), hwm)
        return dict(self.peak)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.read()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self.read()
        fresh = {name: as_if_fresh(mib, self.inherited) for name, mib in self.peak.items()}
        peaks = ", ".join(f"{name} {mib:.1f}" for name, mib in sorted(fresh.items()))
        print(
            f"peak RSS (VmHWM, MiB, as if started fresh; {self.inherited:.1f} inherited "
            f"from the test process at fork): {peaks}"
        )
        return fresh


def curve_client(sock: zmq.Socket[Any], secret_file: Any, server_public_file: Any) -> None:
    """Make ``sock`` a CURVE client with the key pair in ``secret_file``."""
    import zmq.auth

    public, secret = zmq.auth.load_certificate(str(secret_file))
    server, _ = zmq.auth.load_certificate(str(server_public_file))
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server


def join_as_worker(
    ctx: zmq.Context[Any],
    endpoint: str,
    task_type: str = "FIRST",
    curve: tuple[Any, Any] | None = None,
) -> tuple[zmq.Socket[Any], int]:
    """Join the task at ``endpoint`` as a worker that takes nothing (READY without credit)
    and return its socket and the run number WELCOME gave it: what any worker learns."""
    codec = protocol.Codec(64 * MIB)
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, b"attacker")
    if curve is not None:
        curve_client(sock, *curve)
    sock.connect(endpoint)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sock.send_multipart(codec.ready(task_type, 1, 0))
        if sock.poll(500):
            msg = protocol.decode(sock.recv_multipart())
            if type(msg) is protocol.Welcome:
                sock.send_multipart(codec.credit(0))
                return sock, msg.run
    raise AssertionError("no WELCOME within 30 s")


def nested_bomb(fields: list[Any], total_bytes: int = 16 * MIB) -> bytes:
    """A body ``fields + [bomb]`` whose last field is a dict holding ``total_bytes`` of
    nested small lists (``[[], [], ... 15]``, 16 bytes each: 16 objects, about 900 bytes
    once decoded): every container is within msgpack's per-container limits."""
    import msgpack

    small = b"\x9f" + b"\x90" * 15
    n = total_bytes // len(small)
    head = msgpack.packb(fields)  # an array of len(fields): re-headed below
    assert len(fields) < 15
    inner = b"\x81\xa1x" + b"\xdd" + n.to_bytes(4, "big") + small * n
    return bytes((0x90 | (len(fields) + 1),)) + head[1:] + inner


def logging_to(path: Any, target: Any, level: int = logging.WARNING) -> Any:
    """``target`` run (in the child) with zmqpipeline's log from ``level`` up written to
    ``path``."""

    def run() -> Any:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        handler.setLevel(level)
        package = logging.getLogger("zmqpipeline")
        package.addHandler(handler)
        package.setLevel(min(package.getEffectiveLevel(), level))
        return target()

    return run


def read_text(path: Any) -> str:
    try:
        with open(path) as source:
            return source.read()
    except OSError:
        return ""


def wait_for_log(path: Any, needles: list[str], timeout: float) -> bool:
    """Until every one of ``needles`` is in the log file at ``path``; ``False`` at
    ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        text = read_text(path)
        if all(needle in text for needle in needles):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling a child's log file: there is no event to wait on


def counting_collector(endpoints: SimpleNamespace) -> type:
    """The tests' recording collector that also writes how many results it refused as
    forged, next to the results (``<results>.forged.json``)."""
    base = make_collector(endpoints)

    class CountingCollector(base):  # type: ignore[misc,valid-type]
        def handle_finished(self, data: Any, task_type: str) -> None:
            super().handle_finished(data, task_type)
            with open(f"{endpoints.results}.forged.json", "w") as out:
                json.dump({"forged": getattr(self, "forged_results", None)}, out)

    return CountingCollector
