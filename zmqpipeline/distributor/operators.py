"""Who operates the run: the control endpoint's warning when anyone may steer it, and the
name of whoever sent each command (its routing id, its address, its CURVE key's name).

A control endpoint on tcp without CURVE takes commands from any process that can reach
the port: on 127.0.0.1 any local user may pause, drain or stop the run. The distributor
says so at WARNING when it binds one (see docs/guides/operating.md), and every command it
answers is logged with its sender, so a run stopped by someone else can be traced.
"""

from __future__ import annotations

import logging
from pathlib import Path

import zmq

from ..security import PUBLIC_KEY_SUFFIX, Security
from ..types import EndpointAddress

__all__ = ["Sender", "key_names", "open_control_warning", "sender_of"]

logger = logging.getLogger("zmqpipeline.control")

#: Who sent a command, in words: ``peer 00a1b2c3d4 at 127.0.0.1, CURVE key operators/ana``.
Sender = str


def open_control_warning(endpoint: EndpointAddress, security: Security | None) -> str | None:
    """The warning for a control endpoint anyone who reaches it may use (``None``: it is
    ipc, whose file's permissions decide, or CURVE admits only operators' keys)."""
    if endpoint.scheme != "tcp" or security is not None:
        return None
    return (
        f"control endpoint {endpoint} is tcp without CURVE: any process that can reach it "
        "(on this host: any local user) can pause, drain or stop this run; use CURVE "
        "(operators' keys, see docs/security.md) or an ipc:// endpoint in a private folder"
    )


def key_names(security: Security | None) -> dict[str, str]:
    """The names of the CURVE public keys ``security`` admits, by their Z85 text (the
    ``User-Id`` ZAP gives a CURVE peer): ``ROLE/NAME`` for ``authorized/ROLE/NAME.key``,
    ``NAME`` for a key directly in the folder; this role's own key pair as ``own key``."""
    if security is None:
        return {}
    names = {security.public_key.decode("ascii", "replace"): "own key"}
    folder = security.authorized_keys_dir
    if folder is None:
        return names
    root = Path(folder)
    for path in sorted(root.glob(f"*{PUBLIC_KEY_SUFFIX}")) + sorted(
        root.glob(f"*/*{PUBLIC_KEY_SUFFIX}")
    ):
        try:
            public, _ = zmq.auth.load_certificate(str(path))
        except (OSError, ValueError):
            continue  # Security refused or skipped it already
        name = path.name[: -len(PUBLIC_KEY_SUFFIX)]
        label = name if path.parent == root else f"{path.parent.name}/{name}"
        names.setdefault(public.decode("ascii", "replace"), label)
    return names


def _property(frame: zmq.Frame, name: str) -> str | None:
    try:
        value = frame.get(name)
    except zmq.ZMQError:  # not set for this peer (no CURVE, or not that transport)
        return None
    return str(value) if value else None


def sender_of(identity: bytes, frame: zmq.Frame, names: dict[str, str]) -> Sender:
    """Who sent a request: its routing id, and its address or CURVE key's name."""
    who = f"peer {identity.hex()}"
    address = _property(frame, "Peer-Address")
    parts = (address or "").split(":")
    if len(parts) == 4 and parts[0] == "localhost":  # ipc: the peer's credentials
        who += f" (uid {parts[1]}, pid {parts[3]})"
    elif address:
        who += f" at {address}"
    user = _property(frame, "User-Id")
    if user:
        who += f", CURVE key {names.get(user, user)}"
    return who
