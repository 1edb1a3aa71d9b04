"""``Task``: what the distributor hands out, one item per :meth:`Task.handle` call."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from .types import EndpointAddress, TaskType

__all__ = ["Task", "check_class_attributes"]

logger = logging.getLogger("zmqpipeline.task")


def check_class_attributes(cls: type, owner: str) -> None:
    """Validate (and coerce plain ``str``) the role attributes a subclass defines.

    Raises ``TypeError`` naming the class and attribute when a value has the wrong type.
    """
    for name in ("task_type",):
        value = cls.__dict__.get(name)
        if value is not None and not isinstance(value, TaskType):
            if not isinstance(value, str):
                raise TypeError(f"{owner}.{name} must be a TaskType, not {type(value).__name__}")
            setattr(cls, name, TaskType(value))
    for name in ("endpoint", "collector_endpoint", "ack_endpoint"):
        value = cls.__dict__.get(name)
        if value is not None and not isinstance(value, EndpointAddress):
            if not isinstance(value, str):
                raise TypeError(
                    f"{owner}.{name} must be an EndpointAddress, not {type(value).__name__}"
                )
            setattr(cls, name, EndpointAddress(value))


class Task:
    """Subclass to describe one kind of work.

    Set ``task_type``, ``endpoint`` (where this task's workers connect) and
    ``dependencies`` (task types that must be fully collected first). Implement
    :meth:`handle`; set ``self.is_complete = True`` in the call that hands out the last item.
    """

    #: The task type this task hands out (one task type, one Task class, one kind of worker).
    task_type: ClassVar[TaskType]
    #: Where this task's workers connect (the distributor binds it).
    endpoint: ClassVar[EndpointAddress]
    #: Task types whose every item must be collected before this task starts.
    dependencies: ClassVar[list[TaskType]] = []
    #: Seconds an item may stay un-ACKed before it is handed out again (``None``: the
    #: adaptive limit, ``ITEM_TIMEOUT_FACTOR`` x the p99 of recent items, with a floor).
    item_time_limit_s: ClassVar[float | None] = None
    #: Retry policy (``None``: the settings' defaults). ``max_attempts``: tries of an item
    #: whose user code raises; ``retry_backoff_s``: wait before the first retry (doubling
    #: after); ``retry_for``: the exception types (classes or names) worth a retry, any
    #: other fails the item at once (``None``: every exception is retried).
    max_attempts: ClassVar[int | None] = None
    retry_backoff_s: ClassVar[float | None] = None
    retry_for: ClassVar[tuple[type[BaseException] | str, ...] | None] = None
    #: After ``handle``, ``initialize`` or ``is_available_for_handling`` raised: ``False``
    #: (default) hands out nothing more from this task, ``True`` goes on.
    continue_after_error: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_class_attributes(cls, cls.__name__)
        deps = cls.__dict__.get("dependencies")
        if deps is not None:
            if not isinstance(deps, (list, tuple)):
                raise TypeError(
                    f"{cls.__name__}.dependencies must be a list of TaskType, "
                    f"not {type(deps).__name__}"
                )
            coerced = []
            for dep in deps:
                if not isinstance(dep, str):
                    raise TypeError(f"{cls.__name__}.dependencies holds {dep!r}, not a TaskType")
                coerced.append(dep if isinstance(dep, TaskType) else TaskType(dep))
            cls.dependencies = coerced
        limit = cls.__dict__.get("item_time_limit_s")
        if limit is not None and (not isinstance(limit, (int, float)) or limit <= 0):
            raise TypeError(f"{cls.__name__}.item_time_limit_s must be a positive number")

    def __init__(self) -> None:
        #: Set to ``True`` in the :meth:`handle` call that hands out the last item.
        self.is_complete = False
        self.metadata: dict[str, Any] = {}

    def initialize(self, metadata: dict[str, Any]) -> None:
        """Called once before the first :meth:`handle`, with the run's metadata (or ``{}``)."""
        self.metadata = metadata

    def is_available_for_handling(self, last_ack_data: dict[str, Any] | None) -> bool:
        """Return ``False`` to hold the next item back until a later ACK arrives."""
        return True

    def handle(self, data: dict[str, Any], address: bytes, msgtype: str) -> dict[str, Any] | None:
        """Return the next item for the worker at ``address``.

        ``data`` is the run's metadata (``{}`` without a MetaDataWorker), ``address`` the
        worker's id and ``msgtype`` is ``MESSAGE_TYPE_DATA``. Return a dict (sent to the
        worker) or ``None`` (the worker gets ``{}``); anything else is a ``TypeError``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement handle()")
