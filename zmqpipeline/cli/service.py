"""The Service-mode commands of ``zmqpipeline``: ``service``, ``serviceworker``, ``request``.

:func:`add_service_commands` registers them on the main command's subparsers; each handler
returns the exit status: 0 ok, 1 the request failed or timed out, 2 bad input (one line on
stderr, no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ..errors import ConfigurationError, ServiceError
from ..service.client import REQUEST_RETRIES, REQUEST_TIMEOUT_S, ServiceClient
from ..service.service import WORKER_WAIT_S, Service
from ..service.worker import ServiceWorker
from .args import add_command

__all__ = ["add_service_commands"]

# Module attributes ``zmqpipeline service MODULE`` reads (the seed spelled one FRONTENT).
_FRONTEND_NAMES = ("FRONTEND_ENDPOINT", "FRONTENT_ENDPOINT")
_BACKEND_NAMES = ("BACKEND_ENDPOINT",)


class _BadInput(Exception):
    """Reported as one line on stderr, exit status 2."""


def add_service_commands(subparsers: Any) -> None:
    """Register ``service``, ``serviceworker`` and ``request`` on ``subparsers``."""
    svc = add_command(subparsers, "service", cmd_service)
    svc.add_argument(
        "module",
        nargs="?",
        metavar="MODULE",
        help="module name, .py file or folder holding the endpoints",
    )
    svc.add_argument("--frontend", metavar="ENDPOINT", help="where clients connect")
    svc.add_argument("--backend", metavar="ENDPOINT", help="where service workers connect")
    svc.add_argument(
        "--wait",
        type=_seconds,
        default=WORKER_WAIT_S,
        metavar="SECONDS",
        help="how long a request waits for a worker of its task type to join "
        f"(default {WORKER_WAIT_S:g})",
    )

    worker = add_command(subparsers, "serviceworker", cmd_serviceworker)
    worker.add_argument("target", metavar="MODULE:CLASS")
    _add_request_command(subparsers)


def _add_request_command(subparsers: Any) -> None:
    req = add_command(subparsers, "request", cmd_request)
    req.add_argument("endpoint", metavar="ENDPOINT", help="the service's frontend")
    req.add_argument("task_type", metavar="TASK_TYPE")
    req.add_argument("data", metavar="JSON")
    req.add_argument(
        "--timeout",
        type=_seconds,
        default=REQUEST_TIMEOUT_S,
        metavar="SECONDS",
        help=f"seconds per attempt (default {REQUEST_TIMEOUT_S:g})",
    )
    req.add_argument(
        "--retries",
        type=int,
        default=REQUEST_RETRIES,
        help=f"attempts after the first (default {REQUEST_RETRIES})",
    )


def cmd_service(args: argparse.Namespace) -> int:
    """run a Service: route client requests to service workers

    Run a Service (the broker). Endpoints come from MODULE (its FRONTEND_ENDPOINT and
    BACKEND_ENDPOINT; a folder means its settings.py) or from --frontend/--backend. Ctrl-C
    or SIGTERM stops it and its workers.
    """

    def run() -> int:
        frontend, backend = args.frontend, args.backend
        if args.module is not None:
            module = _load_module(args.module)
            frontend = frontend or _attribute(module, _FRONTEND_NAMES)
            backend = backend or _attribute(module, _BACKEND_NAMES)
        if not frontend or not backend:
            raise _BadInput(
                "give a MODULE defining FRONTEND_ENDPOINT and BACKEND_ENDPOINT, "
                "or --frontend and --backend"
            )
        service = Service(frontend, backend, worker_wait_s=args.wait)
        print(
            f"zmqpipeline service: clients connect to {service.frontend_endpoint}, service "
            f"workers to {service.backend_endpoint} (Ctrl-C stops)",
            flush=True,
        )
        service.run()
        return 0

    return _guarded(run)


def cmd_serviceworker(args: argparse.Namespace) -> int:
    """run a ServiceWorker

    Run the ServiceWorker subclass CLASS from MODULE (a module name or a .py file) until
    the service stops or Ctrl-C.
    """

    def run() -> int:
        spec, sep, name = args.target.rpartition(":")
        if not sep or not spec or not name:
            raise _BadInput(f"expected MODULE:CLASS, got {args.target!r}")
        module = _load_module(spec)
        cls = getattr(module, name, None)
        if not (isinstance(cls, type) and issubclass(cls, ServiceWorker)):
            found = "nothing" if cls is None else repr(cls)
            raise _BadInput(f"{name} in {spec} is not a ServiceWorker subclass (found {found})")
        cls().run()
        return 0

    return _guarded(run)


def cmd_request(args: argparse.Namespace) -> int:
    """send one request to a Service and print the reply

    Send JSON as one request (a JSON list fans out, one request per element) to the
    service at ENDPOINT and print the reply as JSON.
    """

    def run() -> int:
        try:
            data = json.loads(args.data)
        except ValueError as exc:
            raise _BadInput(f"JSON argument is not valid JSON: {exc}") from None
        if not args.task_type:
            raise _BadInput("TASK_TYPE must not be empty")
        if args.retries < 0:
            raise _BadInput(f"--retries must not be negative, got {args.retries}")
        with ServiceClient(
            args.endpoint, args.task_type, timeout=args.timeout, retries=args.retries
        ) as client:
            try:
                reply = client.request(data)
            except ServiceError as exc:
                print(f"zmqpipeline: {exc}", file=sys.stderr)
                return 1
        print(json.dumps(reply, default=str, ensure_ascii=False))
        return 0

    return _guarded(run)


def _guarded(run: Callable[[], int]) -> int:
    try:
        return int(run())
    except (_BadInput, ConfigurationError, TypeError) as exc:
        print(f"zmqpipeline: error: {exc}", file=sys.stderr)
        return 2


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def _attribute(module: ModuleType, names: tuple[str, ...]) -> str | None:
    for name in names:
        value = getattr(module, name, None)
        if value:
            return str(value)
    return None


def _load_module(spec: str) -> ModuleType:
    """Import a dotted module name, a ``.py`` file (its folder goes on ``sys.path``) or a
    folder (its ``settings.py``)."""
    path = spec
    if os.path.isdir(path):
        path = os.path.join(path, "settings.py")
        if not os.path.isfile(path):
            raise _BadInput(f"folder {spec} has no settings.py")
    if path.endswith(".py") or os.sep in path:
        if not os.path.isfile(path):
            raise _BadInput(f"no such file: {path}")
        folder, filename = os.path.split(os.path.abspath(path))
        if folder not in sys.path:
            sys.path.insert(0, folder)
        name = filename[:-3] if filename.endswith(".py") else filename
    else:
        name = spec
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            raise _BadInput(f"no module named {name!r}") from None
        raise _BadInput(f"cannot import {spec}: {exc}") from None
    except Exception as exc:  # the user's module raised while importing
        raise _BadInput(f"cannot import {spec}: {type(exc).__name__}: {exc}") from None
