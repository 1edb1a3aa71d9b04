"""``Task``: what the distributor hands out, one item per :meth:`Task.handle` call."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from .runtime.checks import check_class_attributes, task_types
from .runtime.items import install as install_items
from .runtime.items import install_size
from .types import EndpointAddress, TaskType

if TYPE_CHECKING:
    from .cache import Cache

__all__ = ["Task"]

logger = logging.getLogger("zmqpipeline.task")


class Task:
    """Subclass to describe one kind of work.

    Set ``task_type``, ``endpoint`` (where this task's workers connect) and
    ``dependencies`` (task types that must be fully collected first). Implement
    :meth:`handle`; set ``self.is_complete = True`` in the call that hands out the last item.
    Or implement :meth:`items` instead: return (or yield) every item, and the task is
    complete after the last one.

    Optionally declare how many items the task hands out, with a class or instance
    attribute ``n_items`` or a ``__len__`` method: ``zmqpipeline run`` then shows a real
    progress bar with an ETA (without, a spinner with counts and rate), and the report
    counts the items never handed out if the task stops early.
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
    #: How many items this task hands out, if known (or define ``__len__``): the progress
    #: bar's total, and what the report compares the items handed out with.
    n_items: ClassVar[int | None] = None
    #: May a crashed run with a journal resume this task? ``handle`` is then called again
    #: from the first item, and items already collected are skipped without being sent
    #: (or, if the task defines ``resume(next_seq)``, it is called once to jump ahead to
    #: the item numbered ``next_seq``, counting from 0). Set ``False`` when the items
    #: depend on state the task cannot rebuild: resuming then stops with a clear error.
    resumable: ClassVar[bool] = True
    #: Streaming stage: the task types whose collected results feed this task, each
    #: through :meth:`derive` as it arrives (see docs/concepts/stages.md). A stage hands
    #: out what ``derive`` returns instead of calling :meth:`handle`, and is complete once
    #: its sources are finished and everything it derived is handed out.
    sources: ClassVar[list[TaskType]] = []
    #: ``False``: the collector does not pass this task's results to
    #: ``handle_collection`` (they still count as collected, are ACKed, and feed the
    #: stages whose ``sources`` name this task): for intermediate stages.
    collect_results: ClassVar[bool] = True
    #: Open-ended: the items come from outside (``zmqpipeline push`` or
    #: :class:`~zmqpipeline.Pusher`) instead of :meth:`handle`; the task is complete once
    #: the stream is closed and every pushed item is handed out.
    open_ended: ClassVar[bool] = False
    #: The result cache (:class:`~zmqpipeline.Cache`): an item whose payload and code are
    #: unchanged since its result was collected is not run again, its stored result is
    #: collected (see docs/guides/caching.md). ``None``: every item runs.
    cache: ClassVar[Cache | None] = None
    #: The version of this task's code in its cache's keys; change it to run every item
    #: again. ``None``: a hash of the source of this class and of its workers' classes.
    version: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "items" in cls.__dict__:
            install_items(cls)
        check_class_attributes(cls, cls.__name__)
        if "dependencies" in cls.__dict__:
            cls.dependencies = task_types(cls, "dependencies", cls.__dict__["dependencies"])
        if "sources" in cls.__dict__:
            cls.sources = task_types(cls, "sources", cls.__dict__["sources"], single_ok=True)
        size = cls.__dict__.get("n_items")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise TypeError(f"{cls.__name__}.n_items must be an int >= 0 or None, got {size!r}")
        limit = cls.__dict__.get("item_time_limit_s")
        if limit is not None and (not isinstance(limit, (int, float)) or limit <= 0):
            raise TypeError(f"{cls.__name__}.item_time_limit_s must be a positive number")
        if "items" in cls.__dict__:
            install_size(cls)

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

    def derive(
        self, result: dict[str, Any], item_id: str
    ) -> dict[str, Any] | list[dict[str, Any]] | None:
        """A stage's items from one collected result of a source (called once per result).

        ``result`` is the dict the source's worker returned (``{}`` for ``None``),
        ``item_id`` the source item's id (``"SOURCE/seq"``). Return one item (a dict), several
        (a list of dicts: fan-out) or ``None`` (filtered out). An exception is a reported
        failure of that result; the stage goes on with the next.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement derive()")

    def items(self) -> Iterable[dict[str, Any] | None]:
        """Define instead of :meth:`handle`: the task's items, an iterable (a list: its
        ``len()`` is the task's size) or a generator, each a dict (or ``None``: the
        worker gets ``{}``). Called once, when the first item is wanted (after
        :meth:`initialize`); one element is read ahead, so the task is complete with the
        last. A resumed run calls it again and skips the items collected: give the same
        items in the same order each time (or set ``resumable = False``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement handle() or items()")

    def handle(self, data: dict[str, Any], address: bytes, msgtype: str) -> dict[str, Any] | None:
        """Return the next item for the worker at ``address``.

        ``data`` is the run's metadata (``{}`` without a MetaDataWorker), ``address`` the
        worker's id and ``msgtype`` is ``MESSAGE_TYPE_DATA``. Return a dict (sent to the
        worker) or ``None`` (the worker gets ``{}``); anything else is a ``TypeError``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement handle()")
