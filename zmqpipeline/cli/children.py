"""What each child process of ``zmqpipeline run`` runs: its role, named so ``ps`` tells
the children apart, ended with its parent, reporting back to the parent on a queue."""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import sys
import traceback
from dataclasses import asdict
from typing import Any

from ..distributor import Distributor
from ..errors import ConfigurationError, JournalError
from .discovery import Pipeline

__all__ = ["run_child", "run_distributor", "run_role", "run_worker", "set_process_title"]

_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1
#: The kernel keeps 15 bytes of a process name.
_SHORT_TITLES = {"distributor": "zmqp-distrib"}


def _end_with_parent() -> None:
    """Ask the kernel for SIGTERM when our parent dies (Linux): the role stops as on
    Ctrl-C, instead of running on as an orphan when ``zmqpipeline run`` is killed."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: no prctl
        pass


def set_process_title(role: str) -> None:
    """Name this process after its role, so ``ps``/``top`` tell the children apart: the
    kernel's name (``/proc/self/comm``, 15 bytes) and, if installed, ``setproctitle``."""
    kind = role.split()[0]
    short = _SHORT_TITLES.get(kind, "zmqp-" + kind)[:15]
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(short.encode()), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: no prctl
        pass
    try:
        optional = importlib.import_module("setproctitle")  # optional, not a dependency
    except ImportError:
        return
    optional.setproctitle(f"zmqpipeline {role}")


def run_child(
    events: Any,
    role: str,
    target: Any,
    env: dict[str, str] | None = None,
    pipes: tuple[int, int, int, int] | None = None,
) -> None:
    code = 0
    parent = os.getppid()
    # The parent's SIGTERM handler ends the parent's wait; ours is the role's own (its
    # runtime's, while it runs), else the default: no KeyboardInterrupt at the exit.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.setpgid(0, 0)  # the terminal's Ctrl-C is for the parent, which steers the run
    set_process_title(role)
    _end_with_parent()
    if pipes is not None:  # our stdout and stderr go to the parent, which prints above the bar
        _, out_w, _, err_w = pipes
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        for fd in pipes:
            os.close(fd)
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    os.environ.update(env or {})  # this child's CURVE keys (run --secure)
    try:
        result = target()
        events.put((role, os.getpid(), result))
    except JournalError as exc:  # says what is wrong and what to do, in one line
        print(f"{role}: {exc}", file=sys.stderr, flush=True)
        events.put(("error", os.getpid(), f"{role}: {exc}"))
        code = 1
    except ConfigurationError as exc:  # one line: the parent names the user's addresses
        text = str(exc) if str(exc).startswith(role) else f"{role}: {exc}"
        events.put(("refused", os.getpid(), text))
        code = 2
    except BaseException:  # report it to the parent, whatever it was
        traceback.print_exc()
        events.put(("error", os.getpid(), f"{role}: {traceback.format_exc(limit=3)}"))
        code = 1
    finally:
        events.close()
        if os.getppid() == parent:
            events.join_thread()  # the queue's feeder thread must deliver before we exit
        else:
            events.cancel_join_thread()  # nobody reads it any more: do not wait for that
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def run_worker(cls: type) -> int:
    worker = cls()
    worker.run()
    return int(worker.items_processed)


def run_role(cls: type, journal: str | None = None, fresh: bool = False) -> None:
    role = cls()
    if journal is not None:
        role.journal = journal
        role.fresh = fresh
    role.run()


def run_distributor(
    pipeline: Pipeline,
    events: Any,
    control: str,
    journal: str | None = None,
    fresh: bool = False,
    push: str | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """The distributor of ``zmqpipeline run`` (``workers`` processes per worker class)."""
    collector = pipeline.collector
    meta = pipeline.metadata_worker
    dist = Distributor(
        collector.endpoint,
        collector.ack_endpoint,
        receive_metadata=meta is not None,
        metadata_endpoint=meta.endpoint if meta is not None else None,
        tasks=pipeline.tasks,
        on_progress=lambda summary: events.put(("progress", os.getpid(), summary["tasks"])),
        progress_interval_s=0.25,
        control_endpoint=control,
        journal=journal,
        fresh=fresh,
        push_endpoint=push,
    )
    # Every worker of the run is ours: once each was told the end, none is late.
    dist.expected_workers = workers * len(pipeline.workers)
    report = dist.run()
    return {**asdict(report), "ok": report.ok}


# -- the parent ---------------------------------------------------------------------------
