"""Who operates the run: the control endpoint's warning when anyone may steer it, and the
name of whoever sent each command (its routing id, its address, its CURVE key's name).

A control endpoint on tcp without CURVE takes commands from any process that can reach
the port: on 127.0.0.1 any local user may pause, drain or stop the run. The distributor
says so at WARNING when it binds one (see docs/guides/operating.md), and every command it
answers is logged with its sender, so a run stopped by someone else can be traced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from .. import protocol
from ..errors import MessageTooLarge, ProtocolError
from ..runtime.runtime import DRAIN, RoleRuntime
from ..runtime.transport import send_frames
from ..security import PUBLIC_KEY_SUFFIX, Security
from ..types import EndpointAddress

__all__ = ["Sender", "key_names", "open_control_warning", "serve_control"]

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


def _read(sock: zmq.Socket[Any]) -> tuple[list[bytes], zmq.Frame] | None:
    """One request of at most 3 frames, and its last frame (which carries the peer's
    metadata); ``None`` if none waits. A longer one is read to its end and refused."""
    try:
        frame = sock.recv(zmq.NOBLOCK, copy=False)
    except zmq.Again:
        return None
    frames = [frame.bytes]
    while frame.more:
        frame = sock.recv(0, copy=False)
        if len(frames) < 3:
            frames.append(frame.bytes)
            continue
        while frame.more:
            frame = sock.recv(0, copy=False)
        raise ProtocolError("message of more than 3 frames", [], "frame count")
    return frames, frame


def _sender(identity: bytes, frame: zmq.Frame, names: dict[str, str]) -> Sender:
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


def serve_control(
    rt: RoleRuntime,
    sock: zmq.Socket[Any],
    names: dict[str, str],
    answer: Callable[[Any, Sender], list[bytes]],
) -> None:
    """Answer every command waiting at the control endpoint with ``answer(record,
    sender)``: as :func:`~zmqpipeline.runtime.runtime.serve_requests` does, and with
    who sent it. Garbage is dropped and counted; a reply that cannot leave is forgotten."""
    for _ in range(DRAIN):
        try:
            read = _read(sock)
            if read is None:
                return
            frames, last = read
            if len(frames) != 3:
                raise ProtocolError("expected 3 frames", frames, "frame count")
            msg = protocol.decode(
                frames[1:], protocol.DISTRIBUTOR_CONTROL, "at the control endpoint"
            )
        except ProtocolError as exc:
            rt.drops.drop(f"control: {exc.category}", f"{exc.reason} on control")
            continue
        try:
            send_frames(sock, answer(msg, _sender(frames[0], last, names)), to=frames[0])
        except (zmq.ZMQError, MessageTooLarge):
            pass  # the peer has gone, or the reply is too big: it asks again
