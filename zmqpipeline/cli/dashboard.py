"""``zmqpipeline dashboard ENDPOINT`` (a live page and ``/metrics``) and ``zmqpipeline
metrics ENDPOINT`` (``/metrics`` alone) for a running distributor's control endpoint;
:func:`open_dashboard` serves ``zmqpipeline run PATH --dashboard`` (see
:mod:`zmqpipeline.dashboard`)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from ..dashboard.access import DEFAULT_BIND, load_token
from .args import add_command, client_security

if TYPE_CHECKING:
    from ..dashboard.server import DashboardServer

__all__ = ["add_dashboard_commands", "open_dashboard"]

_BIND_HELP = (
    f"HOST:PORT to serve on (default {DEFAULT_BIND}); anywhere but 127.0.0.1 or localhost "
    "requires a token, printed once in the URL (or --token-file)"
)


def _common(parser: argparse.ArgumentParser, default_bind: str) -> None:
    parser.add_argument(
        "endpoint", metavar="CONTROL_ENDPOINT", help="the distributor's control endpoint"
    )
    parser.add_argument("--bind", default=default_bind, metavar="HOST:PORT", help=_BIND_HELP)
    parser.add_argument(
        "--url-prefix",
        default="",
        metavar="PATH",
        help="serve under this path too (e.g. /pipeline), for a reverse proxy",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="require the token in FILE (its first line; readable by you alone)",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="require CURVE to the control endpoint (the ZMQPIPELINE_CURVE_* variables name "
        "an operator's key pair and the distributor's public key)",
    )


def add_dashboard_commands(sub: Any) -> None:
    """Add ``dashboard`` and ``metrics`` to the ``zmqpipeline`` parser's subcommands."""
    board = add_command(sub, "dashboard", _cmd_dashboard)
    _common(board, DEFAULT_BIND)
    metrics = add_command(sub, "metrics", _cmd_metrics)
    _common(metrics, "127.0.0.1:9808")


def _server(args: argparse.Namespace, page: bool) -> DashboardServer:
    from ..dashboard.server import DashboardServer  # (http.server: for this command only)

    token = load_token(args.token_file) if args.token_file else None
    return DashboardServer(
        args.endpoint,
        args.bind,
        url_prefix=args.url_prefix,
        token=token,
        page=page,
        security=client_security(args.secure, "an operator's"),
    )


def _serve(server: DashboardServer, out: TextIO) -> int:
    """Print the URL, then serve until Ctrl-C or SIGTERM."""
    print(server.url, file=out, flush=True)
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: done.set())
    server.start()
    try:
        while not done.wait(0.5):  # wakes for Ctrl-C (KeyboardInterrupt) too
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    """serve a live page (and /metrics) for a running pipeline

    Serve a live dashboard of the run whose distributor answers at CONTROL_ENDPOINT:
    progress, throughput, latency, workers, failures, and buttons to pause, resume,
    drain or stop it; also /metrics for Prometheus.
    """
    return _serve(_server(args, page=True), sys.stdout)


def _cmd_metrics(args: argparse.Namespace) -> int:
    """serve /metrics (Prometheus) for a running pipeline, with no page"""
    return _serve(_server(args, page=False), sys.stdout)


def open_dashboard(bind: str, control: str, out: TextIO) -> DashboardServer:
    """For ``run --dashboard``: bind now and print the URL (start it once the run's
    processes are started)."""
    from ..dashboard.server import DashboardServer

    server = DashboardServer(control, bind)
    print(f"dashboard: {server.url}", file=out, flush=True)
    return server
