"""A :class:`~zmqpipeline.Task` that gives its items with ``items()`` (an iterable or a
generator) instead of ``handle``: no index, no ``is_complete`` by hand.

``install(cls)`` and ``install_size(cls)`` give such a class the three names the
distributor reads of a task: ``handle`` (the next element), ``is_complete`` (true once
the element handed out was the last: one element is read ahead, so the call that hands
out the last item also completes the task, as :meth:`Task.handle`'s contract asks) and
``n_items`` (the iterable's ``len()`` when it has one). ``items()`` is called once per
task object, when the distributor first asks for an item or its size (after
``initialize``). An exception in ``items()`` or in the generator is raised by the
``handle`` call that would have handed out that element, where the distributor's guard
around user code reports it.

A resumed run (see :mod:`zmqpipeline.distributor.resume`) makes a new task object whose
``items()`` starts again from the first element, and the distributor skips the elements
already collected, as it does for ``handle``: ``items()`` must give the same elements in
the same order each time (a list, the files of a folder sorted, a deterministic
generator), or the class sets ``resumable = False``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["ItemCursor", "install", "install_size"]

_END = object()


class _Raised:
    """An exception of the iterable, held until the element it stands for is asked."""

    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


class ItemCursor:
    """One task's read-ahead over its ``items()``."""

    __slots__ = ("ahead", "owner", "size", "source")

    def __init__(self, task: Any) -> None:
        self.owner = type(task).__name__
        self.size: int | None = None
        self.source: Iterator[Any] = iter(())
        try:
            iterable = task.items()
            self.size = _length(iterable)
            self.source = iter(iterable)
        except Exception as exc:
            self.ahead: Any = _Raised(exc)
            return
        self.ahead = self._read()

    def _read(self) -> Any:
        try:
            return next(self.source, _END)
        except Exception as exc:
            return _Raised(exc)

    @property
    def exhausted(self) -> bool:
        """Nothing is left to hand out."""
        return self.ahead is _END

    def take(self) -> dict[str, Any] | None:
        """The next element (``TypeError`` naming ``items()`` if it is not a dict or
        ``None``), and the one after read ahead."""
        item = self.ahead
        if item is _END:
            raise RuntimeError(f"{self.owner}.items() has no more items")
        self.ahead = self._read()
        if isinstance(item, _Raised):
            raise item.exc
        if item is not None and not isinstance(item, dict):
            raise TypeError(
                f"{self.owner}.items() must give dicts (or None), not "
                f"{type(item).__name__} ({item!r:.60}): e.g. yield {{'value': x}}"
            )
        return item


def _length(iterable: Any) -> int | None:
    if not hasattr(iterable, "__len__"):
        return None
    try:
        size = len(iterable)
    except Exception:
        return None
    return size if isinstance(size, int) else None


def _cursor(task: Any) -> ItemCursor:
    cursor: ItemCursor | None = task.__dict__.get("_items_cursor")
    if cursor is None:
        cursor = task.__dict__["_items_cursor"] = ItemCursor(task)
    return cursor


def _handle(self: Any, data: dict[str, Any], address: bytes, msgtype: str) -> Any:
    """The next element of ``items()``; the task is complete with the last one."""
    return _cursor(self).take()


def _get_complete(self: Any) -> bool:
    if self.__dict__.get("_items_complete"):
        return True
    return _cursor(self).exhausted


def _set_complete(self: Any, value: bool) -> None:
    self.__dict__["_items_complete"] = value


def _get_size(self: Any) -> int | None:
    given = self.__dict__.get("_items_size")
    return given if given is not None else _cursor(self).size


def _set_size(self: Any, value: int | None) -> None:
    self.__dict__["_items_size"] = value


def install(cls: type) -> None:
    """Make ``cls``, which defines ``items()``, hand them out (see the module's text).
    A class that defines ``handle`` too is refused: one of them gives the items."""
    if "handle" in cls.__dict__:
        raise TypeError(
            f"{cls.__name__} defines both items() and handle(): define one (items() gives "
            "every item; handle() makes them one call at a time and sets is_complete)"
        )
    cls.handle = _handle  # type: ignore[attr-defined]
    cls.is_complete = property(_get_complete, _set_complete)  # type: ignore[attr-defined]


def install_size(cls: type) -> None:
    """After the class's checks: its ``n_items`` is the iterable's ``len()`` (if it has
    one), unless the class sets ``n_items`` itself."""
    if cls.__dict__.get("n_items") is None:
        cls.n_items = property(_get_size, _set_size)  # type: ignore[attr-defined]
