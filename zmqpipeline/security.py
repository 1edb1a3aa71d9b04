"""CURVE encryption with ZAP authentication for every tcp socket, from one setting.

The model: every *binding* role (distributor, collector, service) holds the **server** key
pair; every *connecting* role (workers, metadata worker, service workers, clients) holds
its own key pair and knows the server's public key; each binding socket admits only the
clients whose public keys are in the authorised keys directory (plus holders of its own
key pair, so a distributor can connect to a collector that shares the server key).

A :class:`Security` is loaded and checked once, when it is made: a missing or unreadable
file, a secret key where a public one belongs, or a libzmq without CURVE raises
:class:`~zmqpipeline.errors.ConfigurationError` naming the file and the fault.
:mod:`zmqpipeline.runtime.transport` applies it to tcp sockets; ipc and inproc are left alone.

Launched roles read it from the environment (see :meth:`Security.from_env`)::

    ZMQPIPELINE_CURVE_SECRET_KEY=keys/worker1.key_secret    # this role's key pair
    ZMQPIPELINE_CURVE_SERVER_KEY=keys/server.key             # for connecting sockets
    ZMQPIPELINE_CURVE_AUTHORIZED_KEYS=keys/authorized        # for binding sockets
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import zmq
from zmq.utils import z85

from .errors import ConfigurationError

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator

__all__ = [
    "ENV_AUTHORIZED_KEYS",
    "ENV_SECRET_KEY",
    "ENV_SERVER_KEY",
    "PUBLIC_KEY_SUFFIX",
    "ROLES",
    "SECRET_KEY_SUFFIX",
    "ZAP_DOMAIN",
    "KeyPolicy",
    "Security",
    "default_key_name",
    "generate_keys",
    "local_key_env",
    "require_curve",
    "start_authenticator",
]

logger = logging.getLogger("zmqpipeline.security")

#: This role's secret key file (``NAME.key_secret``; it holds the public key too).
ENV_SECRET_KEY = "ZMQPIPELINE_CURVE_SECRET_KEY"
#: The servers' public key file (``NAME.key``), used by every connecting tcp socket.
ENV_SERVER_KEY = "ZMQPIPELINE_CURVE_SERVER_KEY"
#: Directory of the clients' public key files (``*.key``) a binding tcp socket admits.
ENV_AUTHORIZED_KEYS = "ZMQPIPELINE_CURVE_AUTHORIZED_KEYS"

#: ZeroMQ's certificate file names (the czmq / pyzmq ``zmq.auth`` convention).
PUBLIC_KEY_SUFFIX = ".key"
SECRET_KEY_SUFFIX = ".key_secret"
#: The ZAP domain our binding sockets announce to the authenticator.
ZAP_DOMAIN = "zmqpipeline"

_Z85_KEY_CHARS = 40  # a 32-byte curve25519 key, z85-encoded
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

PathArg = Union[str, "os.PathLike[str]"]


def require_curve() -> None:
    """Raise :class:`ConfigurationError` unless libzmq was built with CURVE."""
    if not zmq.has("curve"):
        raise ConfigurationError(
            f"CURVE security was asked for, but libzmq {zmq.zmq_version()} was built without "
            "CURVE (install a pyzmq wheel, or build libzmq with libsodium or tweetnacl)"
        )


# -- loading and checking key files ---------------------------------------------------------


def _check_key(key: bytes | None, path: Path, what: str) -> bytes:
    if key is None:
        raise ConfigurationError(f"{path}: no {what} key in this file")
    try:
        valid = len(key) == _Z85_KEY_CHARS and len(z85.decode(key)) == 32
    except (ValueError, KeyError, IndexError, TypeError):  # z85 decode of garbage
        valid = False
    if not valid:
        raise ConfigurationError(f"{path}: the {what} key is not a 40-character Z85 CURVE key")
    return key


def _read_certificate(path: Path, what: str) -> tuple[bytes, bytes | None]:
    """(public, secret or None) from a ZeroMQ certificate file, or one clear error."""
    if not path.exists():
        raise ConfigurationError(f"{what} {path}: no such file")
    if path.is_dir():
        raise ConfigurationError(f"{what} {path}: is a directory, not a key file")
    import zmq.auth  # CURVE only: zmq.auth is some 5 ms to import

    try:
        with open(path, "rb"):
            pass
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise ConfigurationError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError):
        raise ConfigurationError(
            f"{what} {path}: not a ZeroMQ certificate (no public-key line); "
            "make one with `zmqpipeline keys DIR --name NAME`"
        ) from None
    return _check_key(public, path, "public"), secret


def _load_secret(path: Path) -> tuple[bytes, bytes]:
    what = "CURVE secret key file"
    public, secret = _read_certificate(path, what)
    if secret is None:
        raise ConfigurationError(
            f"{what} {path}: holds only a public key; give the {SECRET_KEY_SUFFIX} file"
        )
    _check_key(secret, path, "secret")
    if zmq.curve_public(secret) != public:
        raise ConfigurationError(f"{what} {path}: its public and secret keys do not match")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        logger.warning("%s is readable by other users (mode %03o): chmod 600 it", path, mode)
    return public, secret


def _load_public(path: Path, what: str) -> bytes:
    public, secret = _read_certificate(path, what)
    if secret is not None:
        raise ConfigurationError(
            f"{what} {path}: holds a secret key where a public one is expected; give the "
            f"{PUBLIC_KEY_SUFFIX} file and keep the {SECRET_KEY_SUFFIX} file private"
        )
    return public


#: What a key may do, by the folder of the authorised keys directory that holds it. A key
#: directly in the directory (the layout before roles) may do what a worker-like peer
#: does; the distributor and operator roles must be given by folder. Holders of the
#: binding roles' own key pair (distributor, collector, service share it) may do all.
ROLES = ("workers", "metadata", "distributor", "operators", "clients", "serviceworkers")
_FLAT_ROLES = ("workers", "metadata", "clients", "serviceworkers")


def _load_keys(directory: Path) -> frozenset[bytes]:
    what = "authorised CURVE keys directory"
    try:
        files = sorted(p for p in directory.iterdir() if p.name.endswith(PUBLIC_KEY_SUFFIX))
    except OSError as exc:
        raise ConfigurationError(f"{what} {directory}: cannot be read ({exc.strerror})") from None
    return frozenset(_load_public(p, "authorised CURVE public key file") for p in files)


def _load_authorized(directory: Path) -> dict[str, frozenset[bytes]]:
    """Role -> the public keys admitted in it (see :data:`ROLES`)."""
    what = "authorised CURVE keys directory"
    if not directory.exists():
        raise ConfigurationError(f"{what} {directory}: no such directory")
    if not directory.is_dir():
        raise ConfigurationError(f"{what} {directory}: not a directory")
    flat = _load_keys(directory)
    empty: frozenset[bytes] = frozenset()
    roles = {role: flat if role in _FLAT_ROLES else empty for role in ROLES}
    for role in ROLES:
        if (directory / role).is_dir():
            roles[role] = roles[role] | _load_keys(directory / role)
    if not any(roles.values()):
        logger.warning(
            "%s %s holds no *%s file: only this role's own key pair will be admitted",
            what,
            directory,
            PUBLIC_KEY_SUFFIX,
        )
    return roles


def _path(value: PathArg) -> Path:
    return Path(os.path.expanduser(os.fspath(value)))


@dataclass(frozen=True)
class Security:
    """One role's CURVE configuration: its key pair, the servers' key, whom it admits.

    ``secret_key_file``: this role's ``NAME.key_secret`` (always needed).
    ``server_public_key_file``: the servers' ``NAME.key``, needed by roles that connect
    over tcp (every role but a lone collector). ``authorized_keys_dir``: the clients'
    ``*.key`` files, needed by roles that bind tcp (distributor, collector, service).

    Give it to a role as a ``security`` class attribute (workers, collector, metadata
    worker, service worker), as ``Distributor(..., security=...)``, ``Service(...,
    security=...)`` or ``ServiceClient(..., security=...)``, as
    ``settings=Settings.from_env(security=Security(...))``, or set the
    ``ZMQPIPELINE_CURVE_*`` variables (:meth:`from_env`).
    """

    secret_key_file: PathArg
    server_public_key_file: PathArg | None = None
    authorized_keys_dir: PathArg | None = None
    public_key: bytes = field(init=False, repr=False, compare=False)
    secret_key: bytes = field(init=False, repr=False, compare=False)
    server_key: bytes | None = field(init=False, repr=False, compare=False)
    authorized_keys: frozenset[bytes] = field(init=False, repr=False, compare=False)
    roles: dict[str, frozenset[bytes]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        require_curve()
        # Paths as given (``~`` expanded), so equal configurations compare equal.
        for name in ("secret_key_file", "server_public_key_file", "authorized_keys_dir"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _path(value))
        public, secret = _load_secret(_path(self.secret_key_file))
        server = None
        if self.server_public_key_file is not None:
            server = _load_public(
                _path(self.server_public_key_file), "CURVE server public key file"
            )
        roles: dict[str, frozenset[bytes]] = {role: frozenset() for role in ROLES}
        if self.authorized_keys_dir is not None:
            roles = _load_authorized(_path(self.authorized_keys_dir))
        object.__setattr__(self, "public_key", public)
        object.__setattr__(self, "secret_key", secret)
        object.__setattr__(self, "server_key", server)
        object.__setattr__(self, "authorized_keys", frozenset().union(*roles.values()))
        object.__setattr__(self, "roles", roles)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Security | None:
        """The configuration the ``ZMQPIPELINE_CURVE_*`` variables name, or ``None``."""
        env = os.environ if environ is None else environ
        secret = env.get(ENV_SECRET_KEY) or None
        server = env.get(ENV_SERVER_KEY) or None
        authorized = env.get(ENV_AUTHORIZED_KEYS) or None
        if secret is None:
            if server or authorized:
                given = ENV_SERVER_KEY if server else ENV_AUTHORIZED_KEYS
                raise ConfigurationError(
                    f"{given} is set but {ENV_SECRET_KEY} is not: CURVE needs this role's "
                    "secret key file too"
                )
            return None
        return cls(secret, server, authorized)

    def admits(self, public_key: bytes, role: str = "workers") -> bool:
        """True if a client presenting ``public_key`` (z85) may connect, in ``role``, to
        a socket of ours that admits that role (see :data:`ROLES`)."""
        return public_key == self.public_key or public_key in self.roles.get(role, ())

    # -- applied by transport.open_socket, before bind/connect --------------------------------

    def make_server(
        self, sock: zmq.Socket[Any], endpoint: str, role: str, admit: str = "workers"
    ) -> None:
        """Make ``sock`` a CURVE server admitting only keys of role ``admit``."""
        if self.authorized_keys_dir is None:
            raise ConfigurationError(
                f"{role} binds {endpoint} with CURVE but no authorised keys directory is set "
                f"(Security(authorized_keys_dir=...) or {ENV_AUTHORIZED_KEYS})"
            )
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public_key)
        sock.setsockopt(zmq.ZAP_DOMAIN, f"{ZAP_DOMAIN}/{admit}".encode())

    def make_client(self, sock: zmq.Socket[Any], endpoint: str, role: str) -> None:
        if self.server_key is None:
            raise ConfigurationError(
                f"{role} connects to {endpoint} with CURVE but the server's public key is not "
                f"set (Security(server_public_key_file=...) or {ENV_SERVER_KEY})"
            )
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public_key)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret_key)


# -- the ZAP side: policy in a plain object, pyzmq's thread runs it ---------------------------


class KeyPolicy:
    """Decides ZAP requests: admits a client key if any configuration given admits it.

    The callback of :meth:`zmq.auth.Authenticator.configure_curve_callback`; logs the first
    refusal of each key (a refused client retries every 100 ms, the log must not flood).
    """

    def __init__(self) -> None:
        self._securities: list[Security] = []
        self._refused: set[bytes] = set()

    def add(self, security: Security) -> None:
        if all(security is not known for known in self._securities):
            self._securities.append(security)

    def callback(self, domain: str, key: bytes) -> bool:
        role = domain.partition("/")[2] or "workers"
        if any(security.admits(key, role) for security in self._securities):
            return True
        if key not in self._refused:
            self._refused.add(key)
            logger.warning(
                "refused a CURVE client whose public key %s is not authorised as %s: %s; "
                "further attempts with this key are refused silently",
                key.decode("ascii", "replace"),
                role,
                self._where_it_belongs(key, role),
            )
        return False

    def _where_it_belongs(self, key: bytes, role: str) -> str:
        """Where a key of ``role`` must be, and where this one is if it is elsewhere (a
        distributor's key put in ``authorized/`` rather than ``authorized/distributor/``)."""
        dirs = [Path(str(s.authorized_keys_dir)) for s in self._securities]
        home = (
            " or ".join(str(d if role in _FLAT_ROLES else d / role) for d in dirs)
            or "(no authorised keys directory)"
        )
        found = sorted(
            {r for sec in self._securities for r, keys in sec.roles.items() if key in keys}
        )
        if found:
            return f"it is admitted as {', '.join(found)} only; a {role} key belongs in {home}"
        return f"it is in none of the authorised directories; a {role} key belongs in {home}"


def start_authenticator(ctx: zmq.Context[Any]) -> tuple[ThreadAuthenticator, KeyPolicy]:
    """Start a ZAP authenticator thread on ``ctx``, deciding CURVE clients by a fresh
    :class:`KeyPolicy` (empty: it admits no one until a :class:`Security` is added).

    One per context (ZAP is bound at a fixed inproc address); the caller stops it before
    terminating the context (``transport.RoleContext`` does).
    """
    from zmq.auth.thread import ThreadAuthenticator  # (asyncio: only where CURVE is on)

    policy = KeyPolicy()
    auth = ThreadAuthenticator(ctx, log=logging.getLogger("zmqpipeline.security.zap"))
    auth.start()
    for role in ROLES:  # one ZAP domain per role a bound socket may admit
        auth.configure_curve_callback(f"{ZAP_DOMAIN}/{role}", credentials_provider=policy)
    return auth, policy


# -- making keys ------------------------------------------------------------------------------


def default_key_name() -> str:
    """This machine's short host name, made safe for a file name."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0]).strip("-.")
    return name or "zmqpipeline"


def generate_keys(directory: PathArg, name: str, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write a CURVE key pair as ``DIR/NAME.key`` (public) and ``DIR/NAME.key_secret``.

    ZeroMQ's certificate format (``zmq.auth.create_certificates``). The secret file is
    mode 0600 from the moment it has its final name (written in a private 0700 staging
    directory, then renamed). An existing pair is kept unless ``overwrite``.
    Returns (public file, secret file).
    """
    import zmq.auth

    require_curve()
    if not _NAME.match(name):
        raise ConfigurationError(
            f"key name {name!r}: use letters, digits, '.', '_' or '-' (no path separators)"
        )
    target = _path(directory)
    public, secret = target / f"{name}{PUBLIC_KEY_SUFFIX}", target / f"{name}{SECRET_KEY_SUFFIX}"
    if not overwrite:
        for existing in (public, secret):
            if existing.exists():
                raise ConfigurationError(
                    f"{existing} already exists: choose another --name, or replace it with --force"
                )
    try:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".zmqpipeline-keys-", dir=target)
    except OSError as exc:
        raise ConfigurationError(f"cannot write keys to {target}: {exc.strerror}") from None
    try:
        staged_public, staged_secret = zmq.auth.create_certificates(staging, name)
        os.chmod(staged_secret, 0o600)
        os.chmod(staged_public, 0o644)
        os.replace(staged_secret, secret)
        os.replace(staged_public, public)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return public, secret


def local_key_env(directory: PathArg) -> tuple[dict[str, str], dict[str, str]]:
    """Fresh keys in ``directory`` for a pipeline on one machine; returns the environment
    of the binding roles (server key pair) and of the connecting ones (client key pair)."""
    keys = _path(directory)
    authorized = keys / "authorized"
    server_public, server_secret = generate_keys(keys, "server")
    client_public, client_secret = generate_keys(keys, "client")
    authorized.mkdir(mode=0o700)
    shutil.copyfile(client_public, authorized / client_public.name)
    common = {ENV_SERVER_KEY: str(server_public), ENV_AUTHORIZED_KEYS: str(authorized)}
    return (
        {**common, ENV_SECRET_KEY: str(server_secret)},
        {**common, ENV_SECRET_KEY: str(client_secret)},
    )
