"""The key of an item's cached result: its task type, the version of the task's code and
the sha256 of the item's msgpack bytes.

The code's version is the task's ``version`` attribute if it sets one, else a hash of
the source of the Task class and of every worker class of its task type loaded in the
distributor's process (each with the classes it inherits from, zmqpipeline's own
excepted), read by :func:`inspect.getsource`. What that code calls elsewhere (a helper
module, a library, a model file) is not in it: name it in ``version``.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from typing import Any

from ..errors import ConfigurationError
from ..utils.serializer import Packer

__all__ = ["KEY_FORMAT", "code_version", "item_key", "payload_bytes", "worker_classes"]

logger = logging.getLogger("zmqpipeline.distributor")

#: Part of every key: a change in how keys are made invalidates every older one.
KEY_FORMAT = b"zmqpipeline-cache-key/1"


def worker_classes(task_type: str) -> list[type[Any]]:
    """The worker classes of ``task_type`` this process has loaded (single- and
    multi-threaded), in a stable order."""
    from ..worker import Worker  # only the distributor's process needs it

    found: dict[str, type[Any]] = {}
    todo: list[type[Any]] = [Worker]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if getattr(cls, "task_type", None) == task_type and not _ours(cls):
            found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[name] for name in sorted(found)]


def code_version(task_class: type[Any]) -> str:
    """The version of ``task_class``'s code that keys its results: its ``version``
    attribute, else a hash of its source and its workers' (see the module's docstring).
    Raises :class:`~zmqpipeline.ConfigurationError` when a source cannot be read."""
    explicit = getattr(task_class, "version", None)
    if explicit is not None:
        if not isinstance(explicit, (str, int)) or isinstance(explicit, bool):
            raise ConfigurationError(
                f"{task_class.__name__}.version must be a str or an int, got {explicit!r}"
            )
        return f"version:{explicit}"
    workers = worker_classes(str(task_class.task_type))
    if not workers:
        logger.warning(
            "cache of task %s: no worker class of task type %s is loaded in the "
            "distributor's process, so only the task's source keys its results (import "
            "the worker's module there, or set %s.version)",
            task_class.__name__,
            task_class.task_type,
            task_class.__name__,
        )
    digest = hashlib.sha256()
    for cls in [task_class, *workers]:
        for part in cls.__mro__:
            if part is object or _ours(part):
                continue
            digest.update(f"{part.__module__}.{part.__qualname__}\0".encode())
            digest.update(_source(part, task_class).encode())
    return "source:" + digest.hexdigest()


def item_key(task_type: str, version: str, payload: bytes) -> bytes:
    """The key (32 bytes) of an item of ``task_type`` whose code is at ``version`` and
    whose msgpack bytes are ``payload``."""
    digest = hashlib.sha256(KEY_FORMAT)
    for part in (task_type.encode(), version.encode()):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    digest.update(hashlib.sha256(payload).digest())
    return digest.digest()


def payload_bytes(packer: Packer, payload: dict[str, Any]) -> bytes | None:
    """An item's msgpack bytes (``None`` if msgpack cannot carry it: it is not cached)."""
    try:
        return packer.pack(payload)
    except TypeError:
        return None


def _ours(cls: type[Any]) -> bool:
    return cls.__module__.split(".")[0] == "zmqpipeline"


def _source(cls: type[Any], task_class: type[Any]) -> str:
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError) as exc:
        raise ConfigurationError(
            f"the cache of task {task_class.__name__} keys results by their code, but the "
            f"source of {cls.__module__}.{cls.__qualname__} cannot be read ({exc}): set "
            f"{task_class.__name__}.version to a string you change with the code"
        ) from None
