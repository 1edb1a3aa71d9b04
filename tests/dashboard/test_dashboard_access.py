"""Who reaches the dashboard, and from where: through a small reverse proxy under a URL
prefix (written here, streaming like nginx with buffering off), and with a token when
bound beyond 127.0.0.1 (a loopback alias, 127.0.0.2: no traffic leaves the machine).
Real pipeline processes; the page in a headless Chromium where there is one."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from dashboard_support import (
    board_fixture,  # noqa: F401  (fixtures: board, browser, ep)
    browser_fixture,  # noqa: F401
    ep_fixture,  # noqa: F401
    page_wait,
    start_pipeline,
    text_of,
    wait_chart,
    wait_status,
)

from zmqpipeline import Control
from zmqpipeline.dashboard.access import load_token, needs_token, parse_bind
from zmqpipeline.errors import UsageError

pytestmark = pytest.mark.timeout(90)

PREFIX = "/pipeline"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class _Proxy(ThreadingHTTPServer):
    """Keeps its request threads and their upstream connections, so that :meth:`close`
    can cut the streams (an event stream through it never ends by itself) and join them."""

    daemon_threads = True
    upstream: tuple[str, int]
    strip: bool
    seen: list[str]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.handlers: list[threading.Thread] = []
        self.open: set[http.client.HTTPConnection] = set()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        self.handlers.append(thread)
        thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        for upstream in list(self.open):
            with contextlib.suppress(OSError, AttributeError):  # closed meanwhile
                upstream.sock.shutdown(socket.SHUT_RDWR)  # its thread's read ends
        for thread in self.handlers:
            thread.join(10)


class _ProxyHandler(BaseHTTPRequestHandler):
    """Forwards ``/pipeline/...`` upstream (the prefix stripped or kept), streaming the
    reply as it comes (an event stream has no end); anything else is a 404."""

    server: _Proxy
    protocol_version = "HTTP/1.0"  # one request per connection: the body ends at close

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def _forward(self) -> None:
        self.server.seen.append(self.path)
        if not self.path.startswith(PREFIX + "/"):
            self.send_error(404, "outside the prefix")
            return
        path = self.path[len(PREFIX) :] if self.server.strip else self.path
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=30)
        self.server.open.add(upstream)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            upstream.request(self.command, path, body=body or None, headers=headers)
            reply = upstream.getresponse()
            self.send_response(reply.status)
            for name, value in reply.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            self.end_headers()
            while chunk := reply.read1(65536):
                self.wfile.write(chunk)
                self.wfile.flush()
        except (OSError, http.client.HTTPException):
            pass  # the browser left, or the proxy is closing
        finally:
            self.server.open.discard(upstream)
            upstream.close()


@pytest.fixture
def proxy() -> Iterator[Any]:
    servers: list[tuple[_Proxy, threading.Thread]] = []

    def make(upstream_port: int, strip: bool) -> _Proxy:
        server = _Proxy(("127.0.0.1", 0), _ProxyHandler)
        server.upstream, server.strip, server.seen = ("127.0.0.1", upstream_port), strip, []
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return server

    yield make
    for server, thread in servers:
        server.close()
        thread.join(5)


@pytest.mark.parametrize("strip", [True, False], ids=["prefix-stripped", "prefix-kept"])
def test_the_page_works_under_a_url_prefix_behind_a_reverse_proxy(
    procs, ep, board, proxy, browser, strip
):
    start_pipeline(procs, ep, 100_000, workers=1, delay=0.01)
    server = board(url_prefix="" if strip else PREFIX)
    front = proxy(server.port, strip)
    browser.get(f"http://127.0.0.1:{front.server_address[1]}{PREFIX}/")
    page_wait(browser, lambda d: "connected to" in text_of(d, "#conn"), what="connected")
    page_wait(browser, lambda d: "items/s" in text_of(d, ".task[data-task=FIRST]"), what="progress")
    wait_chart(browser)
    browser.find_element("id", "pause").click()  # a POST through the proxy too
    page_wait(browser, lambda d: "the run is paused" in text_of(d, "#reply"), what="paused")
    assert Control(ep.control).status()["state"] == "paused"
    outside = [p for p in front.seen if not p.startswith(PREFIX + "/")]
    assert not outside, outside  # relative links only: nothing escaped the prefix
    assert {p.split("?")[0] for p in front.seen} >= {
        f"{PREFIX}/",
        f"{PREFIX}/static/app.js",
        f"{PREFIX}/static/vendor/uPlot.iife.min.js",
        f"{PREFIX}/events",
        f"{PREFIX}/api/command",
    }
    Control(ep.control).stop()
    procs.join(20)


def _get(url: str, token: str | None = None, method: str = "GET") -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = json.dumps({"command": "pause"}).encode() if method == "POST" else None
    if body:
        headers.update({"Content-Type": "application/json", "X-Zmqpipeline-Dashboard": "1"})
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            if "events" not in url:
                reply.read()
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_beyond_127_0_0_1_a_request_without_the_token_is_refused(procs, ep, board):
    start_pipeline(procs, ep, 100_000, workers=1, delay=0.01)
    control = Control(ep.control)
    wait_status(control, lambda s: s["state"] == "running")
    server = board(bind="127.0.0.2:0")
    assert server.token and f"?token={server.token}" in server.url
    base = f"http://127.0.0.2:{server.port}"
    for path in ("/", "/events", "/api/status", "/metrics", "/api/status?token=wrong"):
        assert _get(base + path) == 401, path
    assert _get(base + "/api/command", method="POST") == 401
    assert _get(base + "/api/command", "not-the-token", method="POST") == 401
    assert control.status()["state"] == "running"  # nothing got through
    assert _get(base + "/static/app.js") == 200  # the page's own code is no secret
    assert _get(base + "/api/status", server.token) == 200
    assert _get(base + "/metrics", server.token) in (200, 501)  # 501: no prometheus-client
    assert _get(f"{base}/api/status?token={server.token}") == 200
    control.stop()
    procs.join(20)


def test_the_printed_url_opens_the_page_and_a_reload_needs_no_token(procs, ep, board, browser):
    start_pipeline(procs, ep, 100_000, workers=1, delay=0.01)
    control = Control(ep.control)
    server = board(bind="127.0.0.2:0")
    base = f"http://127.0.0.2:{server.port}"
    browser.get(server.url)  # the printed URL carries the token
    page_wait(browser, lambda d: "connected to" in text_of(d, "#conn"), what="connected")
    browser.get(base + "/")  # reloaded without it: the cookie set by the first load
    page_wait(browser, lambda d: "items/s" in text_of(d, ".task[data-task=FIRST]"), what="progress")
    control.stop()
    procs.join(20)


def test_the_bind_rules_and_token_files(tmp_path):
    assert not needs_token("127.0.0.1") and not needs_token("localhost")
    for host in ("127.0.0.2", "0.0.0.0", "::1", "192.0.2.1"):
        assert needs_token(host)
    assert parse_bind("[::1]:8787") == ("::1", 8787)
    for bad in ("8787", "host:", ":80", "host:http", "host:70000"):
        with pytest.raises(UsageError, match="HOST:PORT"):
            parse_bind(bad)
    token = tmp_path / "token"
    token.write_text("s3cret-but-long-enough\n")
    token.chmod(0o644)
    with pytest.raises(UsageError, match="others may read it"):
        load_token(str(token))
    token.chmod(0o600)
    assert load_token(str(token)) == "s3cret-but-long-enough"
    token.write_text("short\n")
    with pytest.raises(UsageError, match="at least 16"):
        load_token(str(token))
    with pytest.raises(UsageError, match="No such file"):
        load_token(str(tmp_path / "missing"))
