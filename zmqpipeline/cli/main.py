"""The ``zmqpipeline`` command (also ``python -m zmqpipeline``).

The only place in the package that configures logging output.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .._version import __version__
from ..distributor import Distributor
from ..errors import ConfigurationError, MetadataError, UsageError
from ..task import Task
from ..worker.lifetime import add_lifetime_arguments
from .args import ADDERS, add_command, command_of
from .discovery import classes_in, load_class, load_folder, load_module
from .report import already_complete_line, print_failures, resumed_line

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, status 2 (argparse prints usage too)
        self.exit(2, f"zmqpipeline: error: {message}\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


_LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]

_CLASS_SPEC_HELP = """\
MODULE:CLASS names one class: MODULE is a module name importable from the current
folder (tasks, mypkg.workers) or the path of a .py file (examples/singlethread/worker.py);
after the colon comes the class name. Without ":CLASS", MODULE must define exactly one
class of the role.

example:
  zmqpipeline {role} {example}
"""

_DESCRIPTION = """\
Run a zmqpipeline pipeline: a whole one on this machine (run), or one role per
process for many machines (distributor, worker, collector, metadata, service ...)."""


def _role_parser(sub: Any, role: str, text: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(  # type: ignore[no-any-return]
        role,
        help=text,
        description=text[0].upper() + text[1:] + ".",
        epilog=_CLASS_SPEC_HELP.format(role=role, example=example),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``command`` (the core commands and, if another module adds it, that
    module's), or of every command if ``command`` is ``None`` or unknown."""
    parser = _Parser(prog="zmqpipeline", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"zmqpipeline {__version__}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=_LOG_LEVELS,
        help="log output on stderr (default WARNING); also accepted after the command",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    _add_run(sub)
    _add_list(sub)
    _add_distributor(sub)
    _add_roles(sub)
    if command in ADDERS:
        adders = [ADDERS[command]]
    elif command in sub.choices:
        adders = []
    else:
        adders = list(dict.fromkeys(ADDERS.values()))
    for module, adder in adders:
        getattr(importlib.import_module(f".{module}", __package__), adder)(sub)
    for one in sub.choices.values():  # `run DIR --log-level INFO` works too
        one.add_argument(
            "--log-level", default=argparse.SUPPRESS, choices=_LOG_LEVELS, help=argparse.SUPPRESS
        )
    return parser


def _add_roles(sub: Any) -> None:
    """``collector``, ``worker`` and ``metadata``: one role class by MODULE:CLASS."""
    for role, text, example in (
        (
            "collector",
            "run a Collector",
            "examples/singlethread/collector.py:StopWatchCollector",
        ),
        ("worker", "run a worker", "examples/singlethread/worker.py:MyWorker"),
        ("metadata", "run a MetaDataWorker", "examples/metadata/meta_worker.py:MyMetaData"),
    ):
        one = _role_parser(sub, role, text, example)
        one.add_argument("target", metavar="MODULE:CLASS", help="see below")
        one.set_defaults(handler=_cmd_role, role=role)
        if role == "worker":
            add_lifetime_arguments(one)
        if role == "collector":
            one.add_argument(
                "--journal",
                metavar="FILE",
                help="the collector's crash journal (SQLite): ids it handled before a "
                "restart are not handled again",
            )


def _add_run(sub: Any) -> None:
    run = add_command(sub, "run", _cmd_run)
    run.add_argument(
        "path",
        help="folder holding the tasks, workers, collector (e.g. examples/singlethread); "
        "a .py file of it stands for its folder",
    )
    run.add_argument(
        "--workers", type=_positive, default=1, help="processes per worker class (default 1)"
    )
    run.add_argument(
        "--threads",
        type=_positive,
        default=None,
        help="threads per MultiThreadedWorker (default: the class's n_threads)",
    )
    run.add_argument("--quiet", action="store_true", help="no live progress")
    run.add_argument(
        "--secure",
        action="store_true",
        help="over tcp on 127.0.0.1 with CURVE, instead of ipc; it makes its own fresh "
        "keys and ignores the ZMQPIPELINE_CURVE_* variables",
    )
    _journal_arguments(
        run,
        "DIR",
        "folder of the crash journals (distributor.sqlite, "
        "collector.sqlite): a run that stopped before its end resumes",
    )
    run.add_argument(
        "--push",
        metavar="ENDPOINT",
        default=None,
        help="where open-ended tasks take pushed items (default: push.ipc in the run's "
        "private folder, printed at start)",
    )
    run.add_argument(
        "--dashboard",
        nargs="?",
        const="127.0.0.1:8787",
        default=None,
        metavar="HOST:PORT",
        help="serve a live dashboard of the run (default 127.0.0.1:8787; see `dashboard`)",
    )
    run.set_defaults(handler=_cmd_run)


def _add_list(sub: Any) -> None:
    lst = add_command(sub, "list", _cmd_list)
    lst.add_argument("path", metavar="PATH", help="a folder, e.g. examples/singlethread")


def _add_distributor(sub: Any) -> None:
    dist = add_command(sub, "distributor", _cmd_distributor)
    dist.add_argument(
        "tasks",
        nargs="+",
        metavar="MODULE[:CLASS]",
        help="Task classes, or modules whose Task classes to register (a module "
        "with the Collector class gives the collector endpoints)",
    )
    dist.add_argument(
        "--collector",
        metavar="ENDPOINT",
        help="the collector's endpoint (default: from the Collector class found)",
    )
    dist.add_argument("--ack", metavar="ENDPOINT", help="the collector's ACK endpoint")
    dist.add_argument(
        "--metadata",
        metavar="ENDPOINT",
        help="wait for metadata from a MetaDataWorker at this endpoint",
    )
    dist.add_argument(
        "--control",
        metavar="ENDPOINT",
        help="answer operators (zmqpipeline status, pause, ...) at this endpoint",
    )
    _journal_arguments(
        dist,
        "FILE",
        "the distributor's crash journal (SQLite): a run it "
        "holds that stopped before its end resumes",
    )
    dist.add_argument(
        "--push",
        metavar="ENDPOINT",
        help="take items pushed into open-ended tasks (zmqpipeline push) at this endpoint",
    )
    dist.set_defaults(handler=_cmd_distributor)


def _journal_arguments(parser: argparse.ArgumentParser, metavar: str, text: str) -> None:
    parser.add_argument("--journal", metavar=metavar, help=text)
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start a new run even if the journal holds one (it is forgotten)",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="hand out again just the items that failed for good in the journal's run "
        "(finished or not); exit 0 only once they are collected",
    )


def _retry_failed(args: argparse.Namespace, path: str | None) -> None:
    """``--retry-failed``: re-drive the failures the journal at ``path`` holds, say so."""
    if not args.retry_failed:
        return
    if path is None or args.fresh:
        raise UsageError("--retry-failed needs --journal, and not --fresh")
    from ..journal.redrive import redrive_failed

    redriven = redrive_failed(path)
    shown = ", ".join(f"{old} as {new}" for old, new in redriven[:10])
    more = f" and {len(redriven) - 10} more" if len(redriven) > 10 else ""
    print(
        f"retry-failed: {len(redriven)} failed item(s) go out again{': ' if shown else ''}"
        f"{shown}{more}",
        flush=True,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    """run a whole pipeline from a folder on this machine

    Run every role a folder defines, each in its own process: the collector, the
    distributor, --workers processes per worker class and the metadata worker if any;
    print its progress and its report, and exit 0 only if every item was collected.
    """
    from .local import check_curve_env, run_local

    pipeline = load_folder(args.path)
    if not args.secure:
        check_curve_env()
    journal = args.journal and os.path.join(args.journal, "distributor.sqlite")
    _retry_failed(args, journal)
    return run_local(
        pipeline,
        args.workers,
        args.threads,
        args.quiet,
        secure=args.secure,
        journal=args.journal,
        fresh=args.fresh,
        push=args.push,
        dashboard=args.dashboard,
    )


def _cmd_list(args: argparse.Namespace) -> int:
    """list the roles a folder defines

    List the Task, worker, Collector and MetaDataWorker classes defined by the .py files
    of PATH, and any module or class that could not be loaded.
    """
    pipeline = load_folder(args.path, tolerant=True)
    print(f"{pipeline.path}:")
    for task in pipeline.tasks:
        deps = ", ".join(task.dependencies) or "none"
        print(
            f"  task       {task.__name__:<24} type {task.task_type:<12} "
            f"endpoint {task.endpoint}  depends on {deps}{_stage_note(task)}"
        )
    for worker in pipeline.workers:
        threads = getattr(worker, "n_threads", None)
        kind = f"{threads} threads" if "MultiThreaded" in str(worker.__mro__) else "single-threaded"
        print(
            f"  worker     {worker.__name__:<24} type {worker.task_type:<12} "
            f"endpoint {worker.endpoint}  {kind}"
        )
    for collector in pipeline.collectors:
        print(
            f"  collector  {collector.__name__:<24} endpoint {collector.endpoint}  "
            f"ack {collector.ack_endpoint}"
        )
    for meta in pipeline.metadata_workers:
        print(f"  metadata   {meta.__name__:<24} endpoint {meta.endpoint}")
    for note in pipeline.skipped:
        print(f"  skipped    {note}")
    for problem in pipeline.problems:
        print(f"  NOT LOADED {problem}")
    if pipeline.problems:
        return 1
    if not (pipeline.tasks or pipeline.workers or pipeline.collectors):
        raise UsageError(f"{args.path}: no Task, worker or Collector subclass found")
    return 0


def _stage_note(task: type[Task]) -> str:
    """How a stage or open-ended task is fed, for ``list``."""
    note = ""
    if task.sources:
        note += "  stage fed by " + ", ".join(task.sources)
    if task.open_ended:
        note += "  open-ended (zmqpipeline push)"
    if not task.collect_results:
        note += "  (results not passed to handle_collection)"
    return note


def _cmd_distributor(args: argparse.Namespace) -> int:
    """run the distributor for the given tasks

    Register the given Task classes (or every Task class of the given modules) and run
    the distributor until every item is collected or failed for good; exit 0 only if
    every item was collected.
    """
    from ..collector import Collector

    tasks: list[type[Task]] = []
    collectors: list[type[Collector]] = []
    for spec in args.tasks:
        if ":" in spec:
            tasks.append(load_class(spec, "task"))
            continue
        module = load_module(spec)
        tasks += classes_in(module, Task)
        collectors += classes_in(module, Collector)
    if not tasks:
        raise UsageError(f"no Task subclass in {' '.join(args.tasks)}")
    collector_ep, ack_ep = args.collector, args.ack
    if collector_ep is None or ack_ep is None:
        if len(collectors) != 1:
            raise UsageError("give --collector and --ack, or a module defining the Collector")
        collector_ep = collector_ep or collectors[0].endpoint
        ack_ep = ack_ep or collectors[0].ack_endpoint
    _retry_failed(args, args.journal)
    dist = Distributor(
        collector_ep,
        ack_ep,
        receive_metadata=args.metadata is not None,
        metadata_endpoint=args.metadata,
        tasks=tasks,
        journal=args.journal,
        fresh=args.fresh,
        control_endpoint=args.control,
        push_endpoint=args.push,
    )
    report = dist.run()
    if report.already_complete:
        print(already_complete_line(dist.journal, report))
        return 1 if report.failed else 0  # as the run did
    if report.resumed:
        print(resumed_line(report.resumed))
    print(
        f"collected {report.collected}, failed {len(report.failed)}, "
        f"{report.wall_time_s:.2f} s" + (" (stopped early)" if report.aborted else "")
    )
    print_failures(sys.stdout, {"failed": report.failed})
    return 0 if report.ok else 1


def _cmd_role(args: argparse.Namespace) -> int:
    cls = load_class(args.target, args.role)
    role = cls()
    if getattr(args, "journal", None):
        role.journal = args.journal
    if args.role == "worker":  # see zmqpipeline.worker.lifetime
        role.lifetime_s, role.idle_timeout_s = args.lifetime, args.idle_timeout
        role.lifetime_stagger_s = args.lifetime_stagger
    role.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    words = sys.argv[1:] if argv is None else argv
    parser = _build_parser(command_of(words))
    args = parser.parse_args(words)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return int(args.handler(args))
    except (UsageError, ConfigurationError, MetadataError, TypeError) as exc:
        print(f"zmqpipeline: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
