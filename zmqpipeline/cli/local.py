"""``zmqpipeline run PATH``: a whole pipeline on this machine, every role its own process,
over ipc files in a private temporary directory, with live progress and a closing report.

The distributor answers operators at ``ipc://<run dir>/control.ipc`` (printed at start).
The children run in process groups of their own, so the terminal's Ctrl-C reaches this
process alone: the first drains the run through that endpoint, the second stops it, a
third ends every process (as SIGTERM does)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from multiprocessing import connection
from multiprocessing.process import BaseProcess
from typing import Any, TextIO

from ..errors import ConfigurationError
from ..worker import MultiThreadedWorker
from .addresses import rewrite_endpoints
from .children import run_child, run_distributor, run_role, run_worker, set_process_title
from .discovery import Pipeline
from .progress import Progress
from .report import Child, exit_status, how_it_ended, print_report, resumed_line

__all__ = ["check_curve_env", "run_local", "set_process_title"]

_STOP_GRACE_S = 3.0
#: A worker still running this long after the run's end never heard its END: ended.
_STRAGGLER_GRACE_S = 10.0
_PIPE_DRAIN_S = 2.0


def check_curve_env() -> None:
    """Check the ``ZMQPIPELINE_CURVE_*`` variables in this process, before any child starts:
    a file or folder they name that is missing is one clear ``ConfigurationError``."""
    from ..security import Security

    try:
        Security.from_env()
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"the ZMQPIPELINE_CURVE_* variables are set but unusable: {exc} "
            "(unset them, fix them, or use `run --secure`, which makes its own keys)"
        ) from None


class _Run:
    """The parent's side of one local run: its children, their output, the events."""

    def __init__(
        self, pipeline: Pipeline, progress: Progress, out: TextIO, control: str = ""
    ) -> None:
        self.pipeline = pipeline
        self.control = control
        self.push: str | None = None  # where open-ended tasks take pushed items
        self.interrupts = 0  # Ctrl-Cs received (counted by the SIGINT handler)
        self.steered = 0  # ... and acted upon
        self.progress = progress
        self.out = out
        self.ctx = multiprocessing.get_context("fork")
        self.events = self.ctx.Queue()
        self.children: dict[int, tuple[str, BaseProcess]] = {}
        self.server_env: dict[str, str] | None = None
        self.client_env: dict[str, str] | None = None
        self.report: dict[str, Any] | None = None
        self.errors: list[str] = []
        self.refused: list[str] = []  # one-line errors of roles set up wrongly
        self.addresses: dict[str, str] = {}  # private address -> the user's
        self.journal: str | None = None  # the folder of the crash journals
        self.board: Any = None  # a DashboardServer (run --dashboard)
        self.fresh = False
        self.ended_at = 0.0  # when the distributor and the collector had both exited
        self.stragglers: dict[int, float] = {}  # workers ended after the run's end: when
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.pipes = (out_r, out_w, err_r, err_w)
        self.readers = [
            threading.Thread(target=self._relay, args=(out_r, out), daemon=True),
            threading.Thread(target=self._relay, args=(err_r, sys.stderr), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _relay(self, fd: int, target: TextIO) -> None:
        """Print the children's output line by line above the progress bar, until EOF."""
        pending = b""
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self.progress.echo(line.decode(errors="replace"), target)
        if pending:
            self.progress.echo(pending.decode(errors="replace"), target)

    def spawn(self, role: str, target: Any) -> None:
        env = self.server_env if role in ("collector", "distributor") else self.client_env
        process = self.ctx.Process(
            target=run_child, args=(self.events, role, target, env, self.pipes), daemon=False
        )
        process.start()
        assert process.pid is not None
        self.children[process.pid] = (role, process)

    def start(self, workers: int) -> None:
        pipeline = self.pipeline
        journals = self.journal
        collector_journal = _journal_file(journals, "collector")
        fresh = self.fresh
        dist_journal = _journal_file(journals, "distributor")
        # The distributor first: it binds, then makes its items (a Task's items() may take
        # a while) while the other processes are forked and connect.
        self.spawn(
            "distributor",
            lambda: run_distributor(
                pipeline, self.events, self.control, dist_journal, fresh, self.push, workers
            ),
        )
        self.spawn("collector", lambda: run_role(pipeline.collector, collector_journal, fresh))
        for cls in pipeline.workers:
            for _ in range(workers):
                self.spawn(f"worker {cls.__name__}", lambda cls=cls: run_worker(cls))
        meta = pipeline.metadata_worker
        if meta is not None:
            self.spawn("metadata", lambda: run_role(meta))
        os.close(self.pipes[1])  # the children hold the write ends now: EOF when all exit
        os.close(self.pipes[3])
        if self.board is not None:
            self.board.start()  # after the forks: no child holds a thread of it

    def wait(self) -> None:
        """Follow the events until every child has exited (or one crashed)."""
        children, events = self.children, self.events
        while any(p.exitcode is None for _, p in children.values()) or not events.empty():
            if self.interrupts > self.steered:
                self._steer()
            try:
                if self.report is None:
                    kind, _pid, payload = events.get(timeout=0.2)
                else:  # the run is over: wake as each child exits, not a poll later
                    alive = [p.sentinel for _, p in children.values() if p.exitcode is None]
                    if alive:
                        connection.wait(alive, timeout=0.2)
                    kind, _pid, payload = events.get_nowait()
            except Exception:  # queue.Empty
                if self.report is None and _distributor_gone(children):
                    self.errors.append("the distributor exited without a report")
                    return
                self._end_stragglers()
                continue
            if kind == "progress":
                self.progress.show(payload)
            elif kind == "distributor":
                self.report = payload
                # its clock stops where the report's wall time does
                self.progress.show(payload["tasks"], elapsed=payload["wall_time_s"])
            elif kind in ("error", "refused"):
                self.errors.append(payload)
                if kind == "refused":  # set up wrongly (e.g. its address is in use)
                    self.refused.append(payload)
                if self.report is None:
                    return  # a role crashed: stop the rest

    def _end_stragglers(self) -> None:
        """The run has ended (the distributor and the collector exited): a worker still
        running a grace later never heard the END (stopped, or cut off from the
        distributor). Say so and end it, SIGTERM first, SIGKILL if that is not enough."""
        heads = [p for role, p in self.children.values() if role in ("distributor", "collector")]
        if self.report is None or any(p.exitcode is None for p in heads):
            return
        now = time.monotonic()
        self.ended_at = self.ended_at or now
        for pid, (role, process) in self.children.items():
            if process.exitcode is not None or now - self.ended_at < _STRAGGLER_GRACE_S:
                continue
            first = pid not in self.stragglers
            if first:
                self.stragglers[pid] = now
                self.progress.echo(
                    f"warning: {role} (pid {pid}) did not end within {_STRAGGLER_GRACE_S:g} s "
                    "of the run's end (stopped, or cut off from the distributor?): ending it",
                    self.out,
                )
            elif now - self.stragglers[pid] < _STOP_GRACE_S:
                continue
            try:
                os.kill(pid, signal.SIGTERM if first else signal.SIGKILL)
            except ProcessLookupError:
                pass

    def on_sigint(self, signum: int, frame: Any) -> None:
        """Ctrl-C: counted here, acted upon by :meth:`wait`; the third ends everything."""
        self.interrupts += 1
        if self.interrupts >= 3 or not self.control:
            raise KeyboardInterrupt

    def _steer(self) -> None:
        """Drain on the first Ctrl-C, stop on the second (through the control endpoint);
        if the distributor does not answer, end every process."""
        from ..distributor.control import Control
        from ..errors import ControlError

        self.steered = self.interrupts
        command = "drain" if self.steered == 1 else "stop"
        try:
            state = Control(self.control, timeout=2.0).call(command)["state"]
        except ControlError as exc:
            ending = self.report is not None or _distributor_gone(self.children)
            if ending or "has ended" in str(exc) or "no such file" in str(exc):
                self.progress.echo("Ctrl-C: the run is ending already", self.out)
                return  # its report is on the way
            self.progress.echo(f"Ctrl-C: the distributor does not answer ({exc})", self.out)
            raise KeyboardInterrupt from None
        if command == "drain":
            text = "draining: nothing new goes out, items in flight finish (Ctrl-C again: stop)"
        else:
            text = "stopping now: items in flight are abandoned (Ctrl-C again: end every process)"
        self.progress.echo(f"Ctrl-C: {text} [{state}]", self.out)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
        _stop_all(self.children)
        for reader in self.readers:
            reader.join(_PIPE_DRAIN_S)  # a grandchild may still hold a pipe: do not wait
        self.progress.clear()
        self.events.close()

    def child_list(self) -> list[Child]:
        return [Child(role, pid, p.exitcode) for pid, (role, p) in self.children.items()]


def _secure_env(directory: str, out: TextIO) -> tuple[dict[str, str], dict[str, str]]:
    from ..security import ENV_AUTHORIZED_KEYS, ENV_SECRET_KEY, ENV_SERVER_KEY, local_key_env

    if any(os.environ.get(n) for n in (ENV_SECRET_KEY, ENV_SERVER_KEY, ENV_AUTHORIZED_KEYS)):
        print(
            "note: run --secure makes its own fresh keys; the ZMQPIPELINE_CURVE_* variables "
            "are not used",
            file=out,
        )
    return local_key_env(os.path.join(directory, "keys"))


def run_local(
    pipeline: Pipeline,
    workers: int,
    threads: int | None,
    quiet: bool,
    out: TextIO = sys.stdout,
    secure: bool = False,
    journal: str | None = None,
    fresh: bool = False,
    push: str | None = None,
    dashboard: str | None = None,
) -> int:
    """Run ``pipeline`` with ``workers`` processes per worker class; return the exit status.

    ``secure``: over tcp on 127.0.0.1 with CURVE, fresh keys in the private directory (the
    ``ZMQPIPELINE_CURVE_*`` variables are not used). ``journal``: the folder of the crash
    journals; a run they hold that stopped early resumes (``fresh``: start a new one).
    ``push``: where open-ended tasks take pushed items (default: ``push.ipc`` in the
    private directory, when a task is one). ``dashboard``: serve one at this HOST:PORT."""
    pipeline.check_runnable()
    if journal is not None and not fresh:
        done = _already_complete(journal, out)
        if done is not None:
            return done
    _set_threads(pipeline, threads)
    directory = tempfile.mkdtemp(prefix="zmqpipeline-")
    os.chmod(directory, 0o700)
    mapping = rewrite_endpoints(pipeline, directory, tcp=secure)
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    previous_int = signal.getsignal(signal.SIGINT)
    run: _Run | None = None
    interrupted = False
    try:
        env = _secure_env(directory, out) if secure else (None, None)
        control = f"ipc://{directory}/control.ipc"
        run = _Run(pipeline, Progress(out, quiet), out, control)
        if dashboard is not None:  # its URL first
            run.board = _open_dashboard(dashboard, control, out)
        run.server_env, run.client_env = env
        run.addresses = {private: user for user, private in mapping.items()}
        run.journal, run.fresh = journal, fresh
        signal.signal(signal.SIGINT, run.on_sigint)
        print(f"control: {control}  (zmqpipeline status|pause|drain|stop ...)", file=out)
        if push or any(t.open_ended for t in pipeline.tasks):
            run.push = push or f"ipc://{directory}/push.ipc"
            print(f"push: {run.push}  (zmqpipeline push|close ENDPOINT TASK_TYPE ...)", file=out)
        run.start(workers)
        run.wait()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if run is not None:
            run.close()
        shutil.rmtree(directory, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
    if interrupted or run is None:
        print("interrupted: stopped every process of the pipeline", file=out, flush=True)
        return 130
    return _finish(run, out, secure)


def _set_threads(pipeline: Pipeline, threads: int | None) -> None:
    """``--threads``: every multi-threaded worker class runs that many."""
    if threads is not None:
        for cls in pipeline.workers:
            if issubclass(cls, MultiThreadedWorker):
                cls.n_threads = threads


def _finish(run: _Run, out: TextIO, secure: bool) -> int:
    if run.refused and run.report is None:  # one line each, in the user's addresses
        for message in run.refused:
            print(f"zmqpipeline: error: {_users_terms(message, run)}", file=sys.stderr)
        return 2
    for message in run.errors:
        print(f"error in {message}", file=out)
    children = run.child_list()
    report = run.report
    if report is None:
        print("the run did not complete", file=out)
        for child in children:
            print(f"  {child.role} (pid {child.pid}) {how_it_ended(child.exitcode)}", file=out)
        return 1
    ok = bool(report.get("ok", not report["failed"])) and not run.errors
    if report.get("resumed"):
        print(resumed_line(report["resumed"]), file=out)
    print_report(out, run.pipeline.path, report, ok, children)
    if secure:
        print(
            "  secured: tcp on 127.0.0.1, CURVE-encrypted, clients authenticated by key "
            "(fresh keys, removed)",
            file=out,
        )
    if run.interrupts:
        # How it ended, as the report says: a drain may have ended the run before a
        # second Ctrl-C's stop reached it.
        how = {"drained": "drained the run", "completed": "the run completed first"}.get(
            report.get("ended_by", ""), "stopped the run"
        )
        print(f"interrupted: {how} (Ctrl-C)", file=out, flush=True)
        return 130
    # A worker ended by us after the run's end (see _end_stragglers) lost nothing: the
    # run's outcome is the report's; the report's process list shows how it ended.
    return exit_status(report, ok, [c for c in children if c.pid not in run.stragglers])


def _open_dashboard(bind: str, control: str, out: TextIO) -> Any:
    from .dashboard import open_dashboard

    return open_dashboard(bind, control, out)


def _users_terms(message: str, run: _Run) -> str:
    """``message`` with each private address ``run`` gave a role put back as the user
    wrote it (``ipc://<run dir>/0.ipc`` -> ``tcp://host:5558 (run here as ...)``)."""
    for private, user in run.addresses.items():
        message = message.replace(private, f"{user} (run here as {private})")
    return message


def _journal_file(directory: str | None, role: str) -> str | None:
    return None if directory is None else os.path.join(directory, f"{role}.sqlite")


def _already_complete(directory: str, out: TextIO) -> int | None:
    """If the distributor's journal in ``directory`` holds a run that has ended, say so
    in one line and return the exit status that run had (1 if items of it failed), else
    ``None``."""
    from ..journal.run import DistributorJournal, run_is_complete

    path = _journal_file(directory, "distributor")
    assert path is not None
    run = run_is_complete(path)
    if run is None:
        return None
    journal = DistributorJournal(path)
    try:
        loaded = journal.load()
    finally:
        journal.close(complete=True)
    failed = len(loaded.standing) if loaded is not None else 0
    how = f"it ended with {failed} failed item(s)" if failed else "nothing to do"
    print(
        f"run {run} in journal {directory} is already complete: {how} (--fresh starts a new run)",
        file=out,
    )
    return 1 if failed else 0


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
