"""Who may see the dashboard: the bind address, and the token it then requires.

Bound to ``127.0.0.1`` or ``localhost`` (the default) the dashboard asks for nothing: only
this machine's users reach it. Bound anywhere else (another interface, ``0.0.0.0``,
another loopback address) every request but the static files must carry the token: a
``?token=`` query (the printed URL has it), an ``Authorization: Bearer`` header (for a
Prometheus scraper) or the ``zmqpipeline_token`` cookie.
"""

from __future__ import annotations

import hmac
import os
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from ..errors import UsageError

__all__ = ["DEFAULT_BIND", "load_token", "needs_token", "new_token", "parse_bind", "token_ok"]

DEFAULT_BIND = "127.0.0.1:8787"
#: The hosts a dashboard may be bound to without a token.
LOCAL_HOSTS = ("127.0.0.1", "localhost")
TOKEN_COOKIE = "zmqpipeline_token"


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as ``(host, port)``; port 0 picks one."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--bind {text!r}: expected HOST:PORT, e.g. {DEFAULT_BIND}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def needs_token(host: str) -> bool:
    """True unless ``host`` is 127.0.0.1 or localhost."""
    return host not in LOCAL_HOSTS


def new_token() -> str:
    """A fresh random token (printed once, in the URL)."""
    return secrets.token_urlsafe(24)


def load_token(path: str) -> str:
    """The token held by the file ``path`` (its first line); a clear error if unusable."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
    except OSError as exc:
        raise UsageError(f"--token-file {path}: {exc.strerror}") from None
    if len(token) < 16:
        raise UsageError(f"--token-file {path}: the token must be at least 16 characters")
    if os.stat(path).st_mode & 0o077:
        raise UsageError(f"--token-file {path}: others may read it (chmod 600 {path})")
    return token


def token_ok(expected: str, query: str, authorization: str | None, cookie: str | None) -> bool:
    """Whether a request carries ``expected`` in its query, header or cookie."""
    offered: list[str] = parse_qs(query).get("token", [])
    if authorization and authorization.startswith("Bearer "):
        offered.append(authorization[len("Bearer ") :].strip())
    if cookie:
        jar = SimpleCookie()
        try:
            jar.load(cookie)
        except Exception:  # a malformed cookie header: as if none
            jar = SimpleCookie()
        if TOKEN_COOKIE in jar:
            offered.append(jar[TOKEN_COOKIE].value)
    return any(hmac.compare_digest(o.encode(), expected.encode()) for o in offered)
