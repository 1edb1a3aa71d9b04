"""Finding the roles of a pipeline: in a folder (``zmqpipeline run PATH``) or by
``MODULE:CLASS`` (the single-role commands)."""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ..collector import Collector
from ..errors import UsageError
from ..metadata import MetaDataWorker
from ..task import Task
from ..worker import MultiThreadedWorker, SingleThreadedWorker, Worker

__all__ = [
    "ROLE_BASES",
    "Pipeline",
    "UsageError",
    "classes_in",
    "load_class",
    "load_folder",
    "load_module",
]

ROLE_BASES: dict[str, type] = {
    "task": Task,
    "worker": Worker,
    "collector": Collector,
    "metadata": MetaDataWorker,
}
_BASES = {Task, Worker, SingleThreadedWorker, MultiThreadedWorker, Collector, MetaDataWorker}


@dataclass
class Pipeline:
    """The roles found in one folder."""

    path: str
    tasks: list[type[Task]] = field(default_factory=list)
    workers: list[type[Worker]] = field(default_factory=list)
    collectors: list[type[Collector]] = field(default_factory=list)
    metadata_workers: list[type[MetaDataWorker]] = field(default_factory=list)

    @property
    def collector(self) -> type[Collector]:
        if len(self.collectors) != 1:
            found = ", ".join(c.__name__ for c in self.collectors) or "none"
            raise UsageError(f"{self.path}: expected exactly one Collector subclass, found {found}")
        return self.collectors[0]

    @property
    def metadata_worker(self) -> type[MetaDataWorker] | None:
        if len(self.metadata_workers) > 1:
            names = ", ".join(c.__name__ for c in self.metadata_workers)
            raise UsageError(f"{self.path}: more than one MetaDataWorker subclass: {names}")
        return self.metadata_workers[0] if self.metadata_workers else None

    def check_runnable(self) -> None:
        if not self.tasks:
            raise UsageError(f"{self.path}: no Task subclass found")
        self.collector  # noqa: B018 - raises if there is not exactly one
        self.metadata_worker  # noqa: B018
        served = {w.task_type for w in self.workers}
        missing = [t.task_type for t in self.tasks if t.task_type not in served]
        if missing:
            raise UsageError(f"{self.path}: no worker class for task type(s) {', '.join(missing)}")


def _import(name: str, folder: str) -> ModuleType:
    stale = sys.modules.get(name)
    if (
        stale is not None
        and os.path.dirname(os.path.abspath(getattr(stale, "__file__", "") or "")) != folder
    ):
        del sys.modules[name]  # a same-named module of another folder
    try:
        return importlib.import_module(name)
    except SystemExit as exc:
        raise UsageError(f"importing {name} from {folder} called exit({exc.code})") from None
    except Exception as exc:
        raise UsageError(
            f"cannot import {name} from {folder}: {type(exc).__name__}: {exc}"
        ) from None


def load_module(spec: str) -> ModuleType:
    """Import a dotted module name, or a ``.py`` file path (its folder goes on sys.path)."""
    if spec.endswith(".py") or os.sep in spec:
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise UsageError(f"no such file: {spec}")
        folder = os.path.dirname(path)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        return _import(os.path.splitext(os.path.basename(path))[0], folder)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return _import(spec, os.getcwd())


def classes_in(module: ModuleType, base: type) -> list[type[Any]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, base)
        and value not in _BASES
        and value.__module__ == module.__name__
        and all(getattr(value, attr, None) is not None for attr in _REQUIRED.get(base, ()))
    ]


_REQUIRED: dict[type, tuple[str, ...]] = {
    Task: ("task_type", "endpoint"),
    Worker: ("task_type", "endpoint", "collector_endpoint"),
    Collector: ("endpoint", "ack_endpoint"),
    MetaDataWorker: ("endpoint",),
}


def load_class(spec: str, role: str) -> type[Any]:
    """``MODULE:CLASS`` (or ``MODULE`` holding exactly one class of the role) to a class."""
    base = ROLE_BASES[role]
    module_name, _, class_name = spec.partition(":")
    if not module_name:
        raise UsageError(f"expected MODULE:CLASS, got {spec!r}")
    module = load_module(module_name)
    if class_name:
        cls = getattr(module, class_name, None)
        if cls is None:
            raise UsageError(f"{module_name} has no {class_name}")
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise UsageError(f"{spec} is not a {base.__name__} subclass")
        return cls
    found = classes_in(module, base)
    if len(found) != 1:
        names = ", ".join(c.__name__ for c in found) or "none"
        raise UsageError(
            f"{module_name} defines {len(found)} {base.__name__} subclasses ({names}); "
            "name one as MODULE:CLASS"
        )
    return found[0]


def load_folder(path: str) -> Pipeline:
    """Import every ``.py`` file of ``path`` and collect the role classes defined there."""
    folder = os.path.abspath(path)
    if not os.path.isdir(folder):
        raise UsageError(f"no such folder: {path}")
    names = sorted(
        name[:-3]
        for name in os.listdir(folder)
        if name.endswith(".py") and name.isascii() and name[:-3].isidentifier()
    )
    if not names:
        raise UsageError(f"{path} holds no Python files")
    # settings first: the others import it, and it registers the task types.
    names.sort(key=lambda name: name != "settings")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    pipeline = Pipeline(path)
    for name in names:
        module = _import(name, folder)
        pipeline.tasks += classes_in(module, Task)
        pipeline.workers += classes_in(module, Worker)
        pipeline.collectors += classes_in(module, Collector)
        pipeline.metadata_workers += classes_in(module, MetaDataWorker)
    return pipeline
