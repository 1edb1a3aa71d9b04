"""What a journal records of each task's definition, so that a run is resumed only by the
tasks it was written for.

A task's *fingerprint* is its class name and module, the size it declares when
constructed (``n_items`` or ``len()``, ``None`` if none), its ``sources``,
``dependencies`` and whether it is ``open_ended``. Its endpoint is not part of it (``zmqpipeline
run`` gives every run private addresses), nor its code: a fix to ``handle`` or
``derive`` may resume the run it was written for."""

from __future__ import annotations

from typing import Any

from ..task import Task

__all__ = ["changes", "fingerprint", "fingerprints"]


def fingerprint(task: Task) -> dict[str, Any]:
    """The fingerprint of one task (an instance, as constructed)."""
    cls = type(task)
    size = getattr(task, "n_items", None)
    if size is None and hasattr(task, "__len__"):
        try:
            size = len(task)
        except Exception:
            size = None
    return {
        "class": cls.__name__,
        "module": cls.__module__,
        "size": size if isinstance(size, int) and not isinstance(size, bool) else None,
        "sources": sorted(str(s) for s in getattr(task, "sources", ())),
        "dependencies": sorted(str(d) for d in task.dependencies),
        "open_ended": bool(getattr(task, "open_ended", False)),
    }


def fingerprints(tasks: list[Task]) -> dict[str, Any]:
    """``{task_type: fingerprint}`` of a run's tasks."""
    return {task.task_type: fingerprint(task) for task in tasks}


def changes(journaled: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between two ``{task_type: fingerprint}`` maps, in words."""
    out = []
    for task_type in sorted(set(journaled) | set(now)):
        before, after = journaled.get(task_type), now.get(task_type)
        if before is None or after is None:
            out.append(f"task {task_type} {'added' if before is None else 'removed'}")
            continue
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                out.append(f"task {task_type}: {key} {before.get(key)!r} -> {after.get(key)!r}")
    return out
