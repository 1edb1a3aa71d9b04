"""One error hierarchy for the whole package, rooted at :class:`ZmqPipelineError`."""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "EndpointError",
    "ItemFailed",
    "ProtocolError",
    "SerializationError",
    "ServiceError",
    "ZmqPipelineError",
]


class ZmqPipelineError(Exception):
    """Base class of every error zmqpipeline raises on purpose."""


class ConfigurationError(ZmqPipelineError, ValueError):
    """A role, task or option was set up wrongly (cycle, missing endpoint, ...)."""


class EndpointError(ConfigurationError, AttributeError):
    """An endpoint address is malformed.

    Both a ``ValueError`` and an ``AttributeError``: the 2014 library raised
    ``AttributeError`` and code that catches it must keep working.
    """


class ProtocolError(ZmqPipelineError):
    """A message on the wire is malformed. ``frames`` keeps the raw bytes."""

    def __init__(self, reason: str, frames: list[bytes] | None = None, category: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.frames = frames or []
        #: A short, stable name for the kind of fault (for counting).
        self.category = category or reason


class SerializationError(ZmqPipelineError, TypeError):
    """A value cannot be carried by msgpack (also a ``TypeError``, as documented)."""


class ItemFailed(ZmqPipelineError):
    """Raised by nothing in the pipeline; describes an item that failed for good."""


class ServiceError(ZmqPipelineError):
    """A service request failed: the worker raised, or no reply came in time."""
