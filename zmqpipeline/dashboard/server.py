"""The dashboard's HTTP server: the page, its static files, the status pushed as
Server-Sent Events, operator commands, and ``/metrics``.

Every path is relative to the URL prefix (``--url-prefix /pipeline`` serves
``/pipeline/``, and ``/`` too, for a reverse proxy that strips the prefix), and the page
links only relatively, so it works wherever a proxy puts it. Routes::

    ./                  the page (index.html)          ./static/...   its files
    ./events            text/event-stream, one "data:" line of JSON per status read
    ./api/status        the latest snapshot as JSON    ./metrics      Prometheus text
    ./api/command       POST {"command": "pause", "args": {}} -> the distributor's reply

A command must come with the header ``X-Zmqpipeline-Dashboard: 1`` and a JSON body: a
page of another site cannot send that without the browser asking us first (CORS), and we
never say yes, so a dashboard on 127.0.0.1 cannot be steered from a web page elsewhere.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..distributor.control import COMMANDS
from ..errors import ControlError, UsageError
from ..security import Security
from .access import TOKEN_COOKIE, needs_token, new_token, parse_bind, token_ok
from .metrics import MetricsUnavailable, render_metrics
from .poller import StatusPoller

__all__ = ["STATIC_DIR", "DashboardServer"]

logger = logging.getLogger("zmqpipeline.dashboard")

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: An idle event stream gets a comment line this often (proxies close silent streams).
KEEPALIVE_S = 15.0
#: The largest command body taken.
MAX_BODY_BYTES = 64 * 1024
COMMAND_HEADER = "X-Zmqpipeline-Dashboard"
#: A connection that sends no request for this long is closed (a keep-alive one, idle).
HANDLER_TIMEOUT_S = 5.0
STEERING = tuple(c for c in COMMANDS if c != "status")


class DashboardServer:
    """Serve the dashboard of the distributor whose control endpoint is ``endpoint``.

    ``bind`` is ``HOST:PORT``; anywhere but 127.0.0.1/localhost needs a token: ``token``
    if given, else a fresh one (in :attr:`url`). ``page=False`` serves ``/metrics``
    alone. The socket is bound at construction (errors come at once); :meth:`start`
    serves from a thread, :meth:`close` stops."""

    def __init__(
        self,
        endpoint: str,
        bind: str = "127.0.0.1:8787",
        *,
        url_prefix: str = "",
        token: str | None = None,
        page: bool = True,
        security: Security | None = None,
        static_dir: Path = STATIC_DIR,
        poller: StatusPoller | None = None,
    ) -> None:
        host, port = parse_bind(bind)
        self.prefix = _prefix(url_prefix)
        self.token = token if token is not None else (new_token() if needs_token(host) else None)
        self.page = page
        self.static_dir = static_dir
        self.poller = poller or StatusPoller(endpoint, security)
        self.streams = 0  # event streams open now
        self._lock = threading.Lock()
        try:
            self.httpd = _Server((host, port), _Handler)
        except OSError as exc:
            raise UsageError(f"--bind {bind}: {exc.strerror or exc}") from None
        self.httpd.dashboard = self
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="dashboard-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        """The address to open (with the token, if one is needed)."""
        host = str(self.httpd.server_address[0])
        host = f"[{host}]" if ":" in host else host
        path = ("metrics" if not self.page else "") + (f"?token={self.token}" if self.token else "")
        return f"http://{host}:{self.port}{self.prefix}/{path}"

    def start(self) -> None:
        self.poller.start()
        self._thread.start()

    def close(self) -> None:
        self.poller.close()  # wakes every event stream: each ends
        if self._thread.is_alive():
            self.httpd.shutdown()
            self._thread.join()
        self.httpd.server_close()
        self.httpd.join_handlers(HANDLER_TIMEOUT_S + 1.0)

    def stream_opened(self, delta: int) -> None:
        with self._lock:
            self.streams += delta


class _Server(ThreadingHTTPServer):
    """One thread per connection, each kept in :attr:`handlers` so :meth:`join_handlers`
    can wait for them (daemon threads: a browser left open never holds the exit)."""

    daemon_threads = True
    allow_reuse_address = True
    dashboard: DashboardServer

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)
        self.handlers: list[threading.Thread] = []

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="dashboard-request",
            daemon=True,
        )
        self.handlers = [t for t in self.handlers if t.is_alive()] + [thread]
        thread.start()

    def join_handlers(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self.handlers:
            thread.join(max(0.0, deadline - time.monotonic()))


def _prefix(text: str) -> str:
    text = text.strip().strip("/")
    if any(c in text for c in "?#\\ ") or ".." in text.split("/"):
        raise UsageError(f"--url-prefix {text!r}: expected a path such as /pipeline")
    return f"/{text}" if text else ""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = HANDLER_TIMEOUT_S
    server_version = "zmqpipeline-dashboard"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    @property
    def board(self) -> DashboardServer:
        return self.server.dashboard

    def _route(self) -> tuple[str, str]:
        """``(path relative to the prefix, query)``; the prefix itself is optional."""
        url = urlsplit(self.path)
        path, prefix = url.path, self.board.prefix
        if prefix and (path == prefix or path.startswith(prefix + "/")):
            path = path[len(prefix) :] or "="  # "=": the prefix without its slash
        return path, url.query

    def _allowed(self, query: str) -> bool:
        token = self.board.token
        if token is None or token_ok(
            token, query, self.headers.get("Authorization"), self.headers.get("Cookie")
        ):
            return True
        self._send(HTTPStatus.UNAUTHORIZED, b"a token is needed: open the URL printed at start\n")
        return False

    def do_GET(self) -> None:
        path, query = self._route()
        if path == "=":  # /prefix -> /prefix/ (relative: works behind any proxy)
            name = self.board.prefix.rsplit("/", 1)[-1]
            self._send(HTTPStatus.MOVED_PERMANENTLY, b"", headers={"Location": f"{name}/"})
            return
        if path.startswith("/static/") and self.board.page:
            self._static(path[len("/static/") :])
            return
        if not self._allowed(query):
            return
        if path in ("/", "/index.html") and self.board.page:
            self._static("index.html", query)
        elif path == "/events" and self.board.page:
            self._events()
        elif path == "/api/status":
            self._send(HTTPStatus.OK, self.board.poller.payload, "application/json")
        elif path == "/metrics":
            self._metrics()
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n")

    def do_POST(self) -> None:
        path, query = self._route()
        if not self._allowed(query):
            return
        if path != "/api/command" or not self.board.page:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n")
            return
        ok, reply = self._command()
        code = HTTPStatus.OK if ok else HTTPStatus.BAD_REQUEST
        self._send(code, json.dumps(reply).encode(), "application/json")

    def _command(self) -> tuple[bool, dict[str, Any]]:
        if self.headers.get(COMMAND_HEADER) != "1":
            return False, {"error": f"a command needs the header {COMMAND_HEADER}: 1"}
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY_BYTES:
            return False, {"error": f"a command is a JSON body of 1 to {MAX_BODY_BYTES} bytes"}
        try:
            body = json.loads(self.rfile.read(length))
            name, args = body["command"], body.get("args") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            return False, {"error": 'expected {"command": NAME, "args": {...}}'}
        if name not in STEERING or not isinstance(args, dict):
            return False, {"error": f"command: one of {', '.join(STEERING)}, args an object"}
        try:
            return True, self.board.poller.command(name, args)
        except ControlError as exc:
            return False, {"error": str(exc), "state": exc.state}

    def _static(self, name: str, query: str = "") -> None:
        root = self.board.static_dir.resolve()
        path = (root / name).resolve()
        if root not in path.parents or not path.is_file():
            self._send(HTTPStatus.NOT_FOUND, b"not found\n")
            return
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        headers = {"Cache-Control": "no-cache"}
        if self.board.token and "token=" in query:  # reloads without ?token= work too
            headers["Set-Cookie"] = f"{TOKEN_COOKIE}={self.board.token}; HttpOnly; SameSite=Strict"
        self._send(HTTPStatus.OK, path.read_bytes(), kind, headers)

    def _metrics(self) -> None:
        try:
            body, kind = render_metrics(self.board.poller)
        except MetricsUnavailable as exc:
            self._send(HTTPStatus.NOT_IMPLEMENTED, f"{exc}\n".encode())
            return
        self._send(HTTPStatus.OK, body, kind)

    def _events(self) -> None:
        self.send_response(HTTPStatus.OK)
        for name, value in (
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"),  # nginx: do not buffer the stream
            ("Connection", "close"),
        ):
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True
        poller, seq = self.board.poller, 0
        self.board.stream_opened(+1)
        try:
            self.wfile.write(b"retry: 1000\ndata: " + poller.payload + b"\n\n")
            self.wfile.flush()
            seq = poller.seq
            while not poller.closed:
                seq, payload = poller.wait_newer(seq, KEEPALIVE_S)
                chunk = b": keepalive\n\n" if payload is None else b"data: " + payload + b"\n\n"
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the browser went away
        finally:
            self.board.stream_opened(-1)

    def _send(
        self,
        code: int,
        body: bytes,
        kind: str = "text/plain; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
