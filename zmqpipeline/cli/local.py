"""``zmqpipeline run PATH``: a whole pipeline on this machine, every role its own process,
over ipc files in a private temporary directory, with live progress and a closing report."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from multiprocessing.process import BaseProcess
from typing import Any, TextIO

from ..distributor import Distributor
from ..worker import MultiThreadedWorker
from .discovery import Pipeline

__all__ = ["run_local"]

_STOP_GRACE_S = 3.0


def _rewrite_endpoints(pipeline: Pipeline, directory: str, tcp: bool = False) -> dict[str, str]:
    """Point every role at ipc files in ``directory`` (same original address, same file),
    or with ``tcp`` at free ports on 127.0.0.1."""
    mapping: dict[str, str] = {}

    def private(address: str) -> str:
        if address not in mapping:
            mapping[address] = (
                f"tcp://127.0.0.1:{_free_port()}"
                if tcp
                else f"ipc://{directory}/{len(mapping)}.ipc"
            )
        return mapping[address]

    for cls in [
        *pipeline.tasks,
        *pipeline.workers,
        *pipeline.collectors,
        *pipeline.metadata_workers,
    ]:
        for attr in ("endpoint", "collector_endpoint", "ack_endpoint"):
            if attr in _own_or_inherited(cls):
                setattr(cls, attr, private(getattr(cls, attr)))
    return mapping


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _own_or_inherited(cls: type) -> set[str]:
    return {
        attr
        for attr in ("endpoint", "collector_endpoint", "ack_endpoint")
        if getattr(cls, attr, None) is not None
    }


# -- what each child process runs ---------------------------------------------------------


def _child(events: Any, role: str, target: Any, env: dict[str, str] | None = None) -> None:
    code = 0
    os.environ.update(env or {})  # this child's CURVE keys (run --secure)
    try:
        result = target()
        events.put((role, os.getpid(), result))
    except BaseException:  # report it to the parent, whatever it was
        traceback.print_exc()
        events.put(("error", os.getpid(), f"{role}: {traceback.format_exc(limit=3)}"))
        code = 1
    finally:
        events.close()
        events.join_thread()  # the queue's feeder thread must deliver before we exit
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _run_worker(cls: type) -> int:
    worker = cls()
    worker.run()
    return int(worker.items_processed)


def _run_role(cls: type) -> None:
    cls().run()


def _run_distributor(pipeline: Pipeline, events: Any) -> dict[str, Any]:
    collector = pipeline.collector
    meta = pipeline.metadata_worker
    dist = Distributor(
        collector.endpoint,
        collector.ack_endpoint,
        receive_metadata=meta is not None,
        metadata_endpoint=meta.endpoint if meta is not None else None,
        tasks=pipeline.tasks,
        on_progress=lambda summary: events.put(("progress", os.getpid(), summary["collected"])),
        progress_interval_s=0.25,
    )
    return asdict(dist.run())


# -- the parent ---------------------------------------------------------------------------


class _Progress:
    """A live status line on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, stream: TextIO, quiet: bool) -> None:
        self.stream = stream
        self.tty = stream.isatty() and not quiet
        self.quiet = quiet
        self.started = time.monotonic()
        self.last_plain = self.started
        self.width = 0

    def show(self, collected: dict[str, int]) -> None:
        if self.quiet:
            return
        elapsed = time.monotonic() - self.started
        total = sum(collected.values())
        parts = " · ".join(f"{tt} {n}" for tt, n in collected.items())
        rate = total / elapsed if elapsed > 0 else 0.0
        line = f"collected {parts} | {rate:,.0f} items/s | {elapsed:.1f} s"
        if self.tty:
            bar = "#" * min(20, int(elapsed * 4) % 21)
            text = f"\r[{bar:<20}] {line}"
            self.stream.write(text.ljust(self.width))
            self.width = len(text)
            self.stream.flush()
        elif time.monotonic() - self.last_plain >= 2.0:
            self.last_plain = time.monotonic()
            print(line, file=self.stream, flush=True)

    def clear(self) -> None:
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


def run_local(
    pipeline: Pipeline,
    workers: int,
    threads: int | None,
    quiet: bool,
    out: TextIO = sys.stdout,
    secure: bool = False,
) -> int:
    """Run ``pipeline`` with ``workers`` processes per worker class; return the exit status.

    ``secure``: over tcp on 127.0.0.1 with CURVE, fresh keys in the private directory."""
    pipeline.check_runnable()
    if threads is not None:
        for cls in pipeline.workers:
            if issubclass(cls, MultiThreadedWorker):
                cls.n_threads = threads
    directory = tempfile.mkdtemp(prefix="zmqpipeline-")
    os.chmod(directory, 0o700)
    _rewrite_endpoints(pipeline, directory, tcp=secure)
    server_env: dict[str, str] | None = None
    client_env: dict[str, str] | None = None
    if secure:
        from ..security import local_key_env

        try:
            server_env, client_env = local_key_env(os.path.join(directory, "keys"))
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
    ctx = multiprocessing.get_context("fork")
    events = ctx.Queue()
    children: dict[int, tuple[str, BaseProcess]] = {}

    def spawn(role: str, target: Any) -> None:
        env = server_env if role in ("collector", "distributor") else client_env
        process = ctx.Process(target=_child, args=(events, role, target, env), daemon=False)
        process.start()
        assert process.pid is not None
        children[process.pid] = (role, process)

    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    progress = _Progress(out, quiet)
    report: dict[str, Any] | None = None
    errors: list[str] = []
    processed: dict[int, int] = {}
    interrupted = False
    try:
        spawn("collector", lambda: _run_role(pipeline.collector))
        for cls in pipeline.workers:
            for _ in range(workers):
                spawn(f"worker {cls.__name__}", lambda cls=cls: _run_worker(cls))
        meta = pipeline.metadata_worker
        if meta is not None:
            spawn("metadata", lambda: _run_role(meta))
        spawn("distributor", lambda: _run_distributor(pipeline, events))
        while any(p.exitcode is None for _, p in children.values()) or not events.empty():
            try:
                kind, pid, payload = events.get(timeout=0.2)
            except Exception:  # queue.Empty
                if report is None and _distributor_gone(children):
                    errors.append("the distributor exited without a report")
                    break
                continue
            if kind == "progress":
                progress.show(payload)
            elif kind == "distributor":
                report = payload
                progress.show(report["collected"])
            elif kind.startswith("worker"):
                processed[pid] = payload
            elif kind == "error":
                errors.append(payload)
                if report is None:
                    break  # a role crashed: stop the rest
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.clear()
        _stop_all(children)
        shutil.rmtree(directory, ignore_errors=True)
        events.close()
        signal.signal(signal.SIGTERM, previous_term)
    if interrupted:
        print("interrupted: stopped every process of the pipeline", file=out, flush=True)
        return 130
    for message in errors:
        print(f"error in {message}", file=out)
    if report is None:
        print("the run did not complete", file=out)
        return 1
    _print_report(out, pipeline, report, children, processed, time.monotonic() - progress.started)
    if secure:
        print(
            "  secured: tcp on 127.0.0.1, CURVE-encrypted, clients authenticated by key "
            "(fresh keys, removed)",
            file=out,
        )
    failed_children = [role for role, p in children.values() if p.exitcode not in (0, None)]
    if failed_children:
        print(f"process(es) exited with an error: {', '.join(failed_children)}", file=out)
    ok = not report["failed"] and not report["aborted"] and not errors and not failed_children
    return 0 if ok else 1


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _distributor_gone(children: dict[int, tuple[str, BaseProcess]]) -> bool:
    return any(role == "distributor" and p.exitcode is not None for role, p in children.values())


def _stop_all(children: dict[int, tuple[str, BaseProcess]]) -> None:
    """SIGTERM each child still running (by its PID), then SIGKILL what outlives the grace."""
    living = [p for _, p in children.values() if p.exitcode is None]
    for process in living:
        if process.pid is not None:
            try:
                os.kill(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + _STOP_GRACE_S
    for process in living:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.exitcode is None and process.pid is not None:
            os.kill(process.pid, signal.SIGKILL)
            process.join()


def _print_report(
    out: TextIO,
    pipeline: Pipeline,
    report: dict[str, Any],
    children: dict[int, tuple[str, BaseProcess]],
    processed: dict[int, int],
    wall: float,
) -> None:
    total = sum(report["collected"].values())
    print(f"zmqpipeline run {pipeline.path}", file=out)
    print(f"  {'task type':<20} {'collected':>10} {'failed':>7}", file=out)
    failed_by_type: dict[str, int] = {}
    for failure in report["failed"]:
        failed_by_type[failure["task_type"]] = failed_by_type.get(failure["task_type"], 0) + 1
    for task_type, n in report["collected"].items():
        print(f"  {task_type:<20} {n:>10} {failed_by_type.get(task_type, 0):>7}", file=out)
    seconds = report["wall_time_s"]
    rate = total / seconds if seconds > 0 else 0.0
    print(
        f"  wall time {seconds:.2f} s, {rate:,.1f} items/s, retries {report['retries']}", file=out
    )
    latency = report.get("latency_ms") or {}
    if latency:
        print(
            "  latency dispatch->ACK: " + ", ".join(f"{k} {v:.1f} ms" for k, v in latency.items()),
            file=out,
        )
    shares = []
    for pid, (role, _) in sorted(children.items()):
        if role.startswith("worker"):
            n = processed.get(pid, 0)
            share = 100.0 * n / total if total else 0.0
            shares.append(f"{role[7:]}[{pid}] {n} ({share:.0f}%)")
    if shares:
        print("  per worker: " + ", ".join(shares), file=out)
    for failure in report["failed"]:
        last = (failure["error"].strip().splitlines() or [""])[-1]
        print(
            f"  FAILED {failure['task_type']}/{failure['seq']} after "
            f"{failure['attempts']} attempt(s): {last}",
            file=out,
        )
    if report["aborted"]:
        print("  the run was stopped before the end", file=out)
    elif not report["failed"]:
        print(f"  OK: all {total} items collected", file=out)
