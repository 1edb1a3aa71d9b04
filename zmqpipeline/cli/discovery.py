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
from ..distributor import Distributor
from ..errors import UsageError
from ..task import Task
from ..worker import MetaDataWorker, MultiThreadedWorker, SingleThreadedWorker, Worker

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
    #: What could not be loaded (a module that failed to import, a class left out),
    #: one line each; ``load_folder(..., tolerant=True)`` collects these instead of raising.
    problems: list[str] = field(default_factory=list)
    #: Role classes left out for a missing attribute (a user base class, or a mistake).
    skipped: list[str] = field(default_factory=list)

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
        self._check_endpoints()

    def _check_endpoints(self) -> None:
        """Each worker connects where its task is served, and to the collector: refused
        before anything starts, naming both classes and addresses (a worker pointed
        elsewhere would wait for ever)."""
        served = {t.task_type: t for t in self.tasks}
        collector = self.collector
        for worker in self.workers:
            task = served.get(worker.task_type)
            if task is not None and worker.endpoint != task.endpoint:
                raise UsageError(
                    f"{self.path}: {worker.__name__}.endpoint is {worker.endpoint} but its "
                    f"task {task.__name__} ({task.task_type}) is served at {task.endpoint}"
                )
            if worker.collector_endpoint != collector.endpoint:
                raise UsageError(
                    f"{self.path}: {worker.__name__}.collector_endpoint is "
                    f"{worker.collector_endpoint} but {collector.__name__}.endpoint is "
                    f"{collector.endpoint}"
                )


class _RunAtImport(UsageError):
    """A module called ``Distributor.run()`` while it was imported for discovery."""


def _refuse_run(self: Distributor, *args: Any, **kwargs: Any) -> Any:
    raise _RunAtImport("Distributor.run() called")


def _import(name: str, folder: str) -> ModuleType:
    stale = sys.modules.get(name)
    if (
        stale is not None
        and os.path.dirname(os.path.abspath(getattr(stale, "__file__", "") or "")) != folder
    ):
        del sys.modules[name]  # a same-named module of another folder
    # Discovery only imports: a module that runs its distributor at import time would
    # block here for ever (the README's one-file tutorial did), so refuse that clearly.
    original_run = Distributor.run
    setattr(Distributor, "run", _refuse_run)  # noqa: B010 - mypy refuses assigning a method
    try:
        return importlib.import_module(name)
    except _RunAtImport:
        sys.modules.pop(name, None)
        raise UsageError(
            f"{os.path.join(folder, name)}.py runs a Distributor when it is imported; put the "
            'Distributor(...).run() call under `if __name__ == "__main__":` so '
            "zmqpipeline can import the module to find its classes"
        ) from None
    except SystemExit as exc:
        raise UsageError(f"importing {name} from {folder} called exit({exc.code})") from None
    except Exception as exc:
        raise UsageError(
            f"cannot import {name} from {folder}: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        setattr(Distributor, "run", original_run)  # noqa: B010


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
            candidates = [c.__name__ for c in classes_in(module, base)] or [
                n for n, v in vars(module).items() if isinstance(v, type)
            ]
            import difflib  # a name that may be a typo: rare

            close = difflib.get_close_matches(class_name, candidates, n=1, cutoff=0.6)
            hint = f"; did you mean {module_name}:{close[0]}?" if close else ""
            defined = ", ".join(candidates) or "none"
            raise UsageError(f"{module_name} has no {class_name}{hint} (it defines: {defined})")
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


def load_folder(path: str, tolerant: bool = False) -> Pipeline:
    """Import every ``.py`` file of ``path`` and collect the role classes defined there.

    ``path`` may also name one ``.py`` file of the folder. With ``tolerant``, a module that
    fails to import is listed in ``Pipeline.problems`` instead of raising."""
    folder = os.path.abspath(path)
    if os.path.isfile(folder) and folder.endswith(".py"):
        folder = os.path.dirname(folder)  # run DIR/tasks.py: the whole folder is the pipeline
        path = os.path.dirname(path) or "."
    elif not os.path.isdir(folder):
        what = "file" if path.endswith(".py") else "folder"
        raise UsageError(
            f"no such {what}: {path} (expected the folder holding the pipeline's .py files)"
        )
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
        try:
            module = _import(name, folder)
        except UsageError as exc:
            if not tolerant:
                raise
            pipeline.problems.append(str(exc))
            continue
        pipeline.tasks += classes_in(module, Task)
        pipeline.workers += classes_in(module, Worker)
        pipeline.collectors += classes_in(module, Collector)
        pipeline.metadata_workers += classes_in(module, MetaDataWorker)
        pipeline.skipped += _left_out(module)
    return pipeline


def _left_out(module: ModuleType) -> list[str]:
    """Role classes of ``module`` that ``classes_in`` skips for a missing attribute."""
    lines = []
    for base, required in _REQUIRED.items():
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, base)
                and value not in _BASES
                and value.__module__ == module.__name__
            ):
                missing = [a for a in required if getattr(value, a, None) is None]
                if missing:
                    lines.append(
                        f"{module.__name__}.{value.__name__} left out: no {', '.join(missing)}"
                        " (fine for a base class of your own)"
                    )
    return lines
