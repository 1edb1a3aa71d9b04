"""Service-mode roles built for the tests: classes made per test with that test's endpoints,
run as forked processes by the ``procs`` fixture."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

from support.procs import free_port
from zmqpipeline import EndpointAddress, Service, ServiceClient, ServiceWorker, TaskType

for _name in ("UPPER", "OTHER"):
    TaskType.register_type(_name)


def make_service_worker(
    backend: str,
    task_type: str = "UPPER",
    holder: Any = None,
    held: Any = None,
    calls: Any = None,
) -> type[ServiceWorker]:
    """A worker that upper-cases ``text`` and says who answered.

    ``{"action": "raise"}`` raises; ``{"action": "unserializable"}`` returns what msgpack
    cannot carry; ``{"sleep": s}`` sleeps first (a reply says when the call ``started`` and
    ``ended``, on the machine-wide monotonic clock); ``{"action": "hold"}``
    makes the first worker to get it record its pid in ``holder`` (a shared int), set
    ``held`` and hang (until killed); any other worker answers it normally. ``calls`` (a
    shared int) counts the calls of ``handle_message``, as each starts.
    """

    class UpperWorker(ServiceWorker):
        def handle_message(self, data, task_type, msgtype):
            started = time.monotonic()
            if calls is not None:
                with calls.get_lock():
                    calls.value += 1
            action = data.get("action")
            if action == "raise":
                raise ValueError(f"boom {data.get('n')}")
            if action == "unserializable":
                return {"value": object()}
            if action == "hold":
                with holder.get_lock():
                    mine = holder.value == 0
                    if mine:
                        holder.value = os.getpid()
                if mine:
                    held.set()
                    time.sleep(120)
            if data.get("sleep"):
                time.sleep(data["sleep"])
            return {
                "text": str(data.get("text", "")).upper(),
                "client": data.get("client"),
                "n": data.get("n"),
                "pid": os.getpid(),
                "task_type": task_type,
                "msgtype": msgtype,
                "started": started,
                "ended": time.monotonic(),
            }

    UpperWorker.task_type = TaskType(task_type)
    UpperWorker.endpoint = EndpointAddress(backend)
    return UpperWorker


def run_service(
    frontend: str, backend: str, worker_wait_s: float = 5.0, log_path: str | None = None
) -> None:
    """Run a service; with ``log_path``, its log (INFO and up) goes to that file."""
    if log_path is not None:
        handler = logging.FileHandler(log_path)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        service_logger = logging.getLogger("zmqpipeline.service")
        service_logger.addHandler(handler)
        service_logger.setLevel(logging.INFO)
    Service(frontend, backend, worker_wait_s=worker_wait_s).run()


def announcing_stop_signal(ready: Any) -> None:
    """In a child process: make every role's StopSignal set ``ready`` once its SIGINT/SIGTERM
    handlers are installed (so a test signals a role that is listening, not one starting)."""
    import zmqpipeline.runtime.runtime as runtime
    import zmqpipeline.service.client as client

    real = runtime.StopSignal

    class Announcing(real):  # type: ignore[misc,valid-type]
        def __init__(self, install: bool = True) -> None:
            super().__init__(install)
            if install:
                ready.set()

    runtime.StopSignal = client.StopSignal = Announcing  # type: ignore[misc]


def run_client(frontend: str, client_id: int, n: int, out_path: str) -> None:
    """Send ``n`` requests one by one; check each reply is this client's; record who answered."""
    served: Counter[int] = Counter()
    with ServiceClient(frontend, "UPPER", timeout=20) as client:
        for i in range(n):
            text = f"client {client_id} request {i}"
            reply = client.request({"text": text, "client": client_id, "n": i})
            if (reply["text"], reply["client"], reply["n"]) != (text.upper(), client_id, i):
                raise AssertionError(f"client {client_id} got a wrong reply {reply!r} for {i}")
            served[reply["pid"]] += 1
    with open(out_path, "w") as out:
        json.dump({"ok": n, "served": served}, out)


def wait_for_workers(frontend: str, n: int, timeout: float = 30.0) -> set[int]:
    """Until a fan-out of ``n`` slow requests is served by ``n`` different workers: then
    ``n`` workers have joined (each holds one request at a time). Returns their pids."""
    deadline = time.monotonic() + timeout
    with ServiceClient(frontend, "UPPER", timeout=timeout) as client:
        while time.monotonic() < deadline:
            replies = client.request([{"sleep": 0.3} for _ in range(n)])
            pids = {reply["pid"] for reply in replies}
            if len(pids) == n:
                return pids
    raise AssertionError(f"{n} workers did not join within {timeout} s")


def tcp_endpoints() -> SimpleNamespace:
    return SimpleNamespace(
        front=f"tcp://127.0.0.1:{free_port()}", back=f"tcp://127.0.0.1:{free_port()}"
    )


def stop_service(procs, *, killed: tuple[str, ...] = (), name: str = "service") -> None:
    """SIGTERM the service; it tells its workers to stop: every process exits with 0."""
    procs.kill(name, signal.SIGTERM)
    codes = procs.join(20)
    expected = {n: (-signal.SIGKILL if n in killed else 0) for n in codes}
    assert codes == expected
