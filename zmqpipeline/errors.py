"""One error hierarchy for the whole package, rooted at :class:`ZmqPipelineError`."""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ControlError",
    "EndpointError",
    "JournalError",
    "MessageTooLarge",
    "MetadataError",
    "ProtocolError",
    "PushError",
    "RequestFailed",
    "RequestTimeout",
    "SerializationError",
    "ServiceError",
    "UsageError",
    "ZmqPipelineError",
]


class ZmqPipelineError(Exception):
    """Base class of every error zmqpipeline raises on purpose."""


class ConfigurationError(ZmqPipelineError, ValueError):
    """A role, task or option was set up wrongly (cycle, missing endpoint, ...)."""


class JournalError(ConfigurationError):
    """A journal cannot be used: it cannot be written (a full disk, a read-only folder),
    it is damaged or foreign, or it holds a run of another task definition. The message
    names the file and the cause."""


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


class ServiceError(ZmqPipelineError):
    """A service request failed: the worker raised, or no reply came in time."""


class MetadataError(ZmqPipelineError):
    """A MetaDataWorker's ``get_metadata`` raised: nothing was sent (the traceback is
    logged)."""


class UsageError(ConfigurationError):
    """Bad command-line input: reported in one line, exit status 2."""


class MessageTooLarge(ZmqPipelineError, ValueError):
    """A message exceeds the configured ``max_message_bytes`` at the sender."""


class RequestFailed(ServiceError):
    """The worker raised in ``handle_message`` or the service refused the request.

    ``error`` holds the full text (for a worker error, with its traceback); ``index`` is the
    element of a list request that failed (``None`` for a single request).
    """

    def __init__(self, message: str, task_type: str, error: str, index: int | None) -> None:
        super().__init__(message)
        self.task_type = task_type
        self.error = error
        self.index = index


class RequestTimeout(ServiceError, TimeoutError):
    """No reply came in time, after every retry."""


class ControlError(ZmqPipelineError):
    """A command to a distributor's control endpoint failed: no reply came in time (the
    endpoint is unreachable, or refuses our key), or the distributor refused the command
    (it makes no sense in the run's state). ``state`` is the run's state when the
    distributor said why (``None`` if no reply came)."""

    def __init__(self, message: str, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state


class PushError(ZmqPipelineError):
    """Pushing items into an open-ended task failed: no reply came in time (the push
    endpoint is unreachable, or refuses our key), or the distributor refused the push
    (no such task, not open-ended, closed, or its backlog stayed full)."""
