"""``TaskType`` and ``EndpointAddress``: validated strings of the public API."""

from __future__ import annotations

import re
from typing import ClassVar

from .errors import EndpointError

__all__ = ["EndpointAddress", "TaskType"]


class TaskType(str):
    """The name of a registered task type. ``TaskType('X')`` raises ``TypeError`` if
    ``'X'`` was not registered with :meth:`register_type` first."""

    _registered: ClassVar[set[str]] = set()

    def __new__(cls, name: str) -> TaskType:
        if not isinstance(name, str):
            raise TypeError(f"task type name must be a str, not {type(name).__name__}")
        if name not in cls._registered:
            raise TypeError(
                f"task type {name!r} is not registered; call TaskType.register_type({name!r}) first"
            )
        return super().__new__(cls, name)

    @classmethod
    def register_type(cls, name: str) -> TaskType:
        """Register ``name`` as a task type and return it as a ``TaskType``."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"task type name must be a non-empty str, got {name!r}")
        cls._registered.add(name)
        return cls(name)

    @classmethod
    def is_registered(cls, name: str) -> bool:
        """True if ``name`` was registered with :meth:`register_type`."""
        return name in cls._registered


_TCP = re.compile(r"^(?:\*|\[[0-9A-Fa-f:.%\w]+\]|[\w.\-*;%]+):(\d{1,5})$")


class EndpointAddress(str):
    """A ZeroMQ endpoint, validated at construction.

    Scheme ``tcp`` (``host:port``, numeric port), ``ipc`` or ``inproc``. Anything else
    raises :class:`~zmqpipeline.errors.EndpointError`, both a ``ValueError`` and an
    ``AttributeError``.
    """

    scheme: str
    location: str

    def __new__(cls, address: str) -> EndpointAddress:
        if isinstance(address, EndpointAddress):
            return address
        if not isinstance(address, str) or not address:
            raise EndpointError(f"endpoint address must be a non-empty str, got {address!r}")
        scheme, sep, location = address.partition("://")
        if not sep:
            raise EndpointError(
                f"endpoint {address!r} has no scheme; expected tcp://host:port, ipc://path "
                "or inproc://name"
            )
        if scheme not in ("tcp", "ipc", "inproc"):
            raise EndpointError(
                f"endpoint {address!r} has unknown scheme {scheme!r}; expected tcp, ipc or inproc"
            )
        if not location:
            raise EndpointError(f"endpoint {address!r} names no {scheme} location")
        if scheme == "tcp":
            match = _TCP.match(location)
            if not match:
                raise EndpointError(
                    f"tcp endpoint {address!r} must be tcp://host:port with a numeric port"
                )
            if not 0 < int(match.group(1)) < 65536:
                raise EndpointError(f"tcp endpoint {address!r} has port out of range 1-65535")
        self = super().__new__(cls, address)
        self.scheme = scheme
        self.location = location
        return self
