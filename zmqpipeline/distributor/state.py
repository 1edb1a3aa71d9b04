"""The records of the distributor (workers, items, task state, the adaptive item time
limit), the ``SeenSet`` the collector and the journals keep, dependency checks and task
sizes: data, apart from the decisions."""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..runtime.seen import SeenSet
from ..task import Task

if TYPE_CHECKING:
    from .scheduler import Scheduler

__all__ = [
    "COLLECTOR",
    "Item",
    "ItemTimer",
    "SchedulerPart",
    "SeenSet",
    "TaskState",
    "WorkerRecord",
    "check_dependencies",
    "task_size",
]


#: The scheduler's outbox channel of the socket to the collector (worker channels are
#: task endpoints).
COLLECTOR = "collector"


class SchedulerPart:
    """One part of the scheduler (hand-out, ACKs, liveness, failures, stages): it holds
    the :class:`~.scheduler.Scheduler`, whose state it reads and changes, as :attr:`s`."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.s = scheduler


@dataclass(eq=False, slots=True)
class WorkerRecord:
    wid: bytes
    task_type: str
    capacity: int  # what it asked to hold, capped by settings.max_credit
    credit: int
    last_seen: float
    accepted: bool = False  # WELCOME sent
    confirmed: bool = False  # it answered WELCOME: items may go to it
    held: set[int] = field(default_factory=set)  # seqs handed to it, not yet ACKed
    completed: int = 0  # its results ACKed: its window grows with them
    threads: int = 1  # items it executes at once
    recalling: bool = False  # asked to hand back unstarted items, no answer yet
    #: It last answered a RECALL with nothing while holding this many: it has started
    #: all it holds; ask again only once it holds more.
    started_all_at: int | None = None
    overdue: bool = False  # items of it ran over their time limit: see window()

    def window(self, initial: int) -> int:
        """Items it may have un-ACKed at once (its credit bounds it further): a new worker
        starts at ``initial`` and earns one more per completed item (slow start), so a
        peer that asks for much and does nothing holds little. One whose items ran over
        their time limit (its results do not reach the collector?) starts again from one:
        a worker cut off from the collector for good loses one item per time limit, not
        a window's worth each time."""
        return (1 if self.overdue else initial) + self.completed


@dataclass(eq=False, slots=True)
class Item:
    seq: int
    payload: dict[str, Any]
    worker: bytes | None = None  # None while waiting in the retry queue
    attempts: int = 0  # user code raised on it
    deaths: int = 0  # workers that held it died, or it ran over its time limit
    sent_at: float = 0.0
    first_sent_at: float = 0.0
    avoid: bytes | None = None  # handed back by this worker: give it to another
    nbytes: int = 0  # its big values (frames): what it weighs against max_in_flight_bytes


class ItemTimer:
    """The adaptive item time limit of one task: ``factor`` x the p99 of recent
    hand-out-to-ACK times, never under ``floor_s``."""

    __slots__ = ("_limit", "_since", "factor", "floor_s", "samples")

    def __init__(self, factor: float, floor_s: float) -> None:
        self.factor = factor
        self.floor_s = floor_s
        self.samples: deque[float] = deque(maxlen=1000)
        self._limit = floor_s
        self._since = 0

    def observe_all(self, seconds: Collection[float]) -> None:
        """Hand-out-to-ACK times of items just collected (an ACK's at once)."""
        self.samples.extend(seconds)
        self._since += len(seconds)
        # Sorting 1000 samples costs ~100 µs: do it every 1000 items (every 10 early on).
        if self._since >= 1000 or (len(self.samples) < 1000 and self._since >= 10):
            self._since = 0
            ordered = sorted(self.samples)
            p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
            self._limit = max(self.floor_s, self.factor * p99)

    @property
    def limit_s(self) -> float:
        return self._limit


@dataclass(eq=False, slots=True)
class TaskState:
    task: Task
    task_type: str
    endpoint: str
    dependencies: list[str]
    timer: ItemTimer
    active: bool = False
    finished: bool = False
    next_seq: int = 0
    in_flight: dict[int, Item] = field(default_factory=dict)  # handed out, not yet ACKed
    task_names: int = -1  # attributes of the task instance when last looked at (handout)
    has_frames: bool = False  # an item had big values: count bytes in flight from now on
    retry: deque[tuple[float, int]] = field(default_factory=deque)  # (ready_at, seq)
    suspect: deque[int] = field(default_factory=deque)  # seqs whose workers died
    workers: dict[bytes, WorkerRecord] = field(default_factory=dict)
    collected: int = 0
    failed: list[Any] = field(default_factory=list)  # Failure records (failures.py)
    retries: int = 0
    last_ack_data: dict[str, Any] | None = None
    held_back: bool = False  # is_available_for_handling said no; wait for an ACK
    handle_errors: int = 0
    rotation: int = 0
    size: int | None = None  # items the task declares (task_size), read when it starts
    oversize_told: bool = False  # warned that it hands out more than its size

    def unassign(self, item: Item) -> None:
        """``item`` is no longer held by its worker (it waits, or is done)."""
        if item.worker is not None:
            worker = self.workers.get(item.worker)
            if worker is not None:
                worker.held.discard(item.seq)
            item.worker = None


def task_size(task: Task) -> int | None:
    """The number of items ``task`` declares (``n_items`` or ``len(task)``), else ``None``."""
    size = getattr(task, "n_items", None)
    if size is None and hasattr(task, "__len__"):
        try:
            size = len(task)
        except Exception:
            return None
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def check_dependencies(tasks: dict[str, type[Task]]) -> None:
    """Refuse unknown dependencies or sources, and cycles among them, naming them. A
    source (a streaming stage's input) is an edge as much as a dependency: a stage fed,
    directly or not, by its own results would never finish."""
    for task_type, cls in tasks.items():
        for relation in ("dependencies", "sources"):
            unknown = [dep for dep in getattr(cls, relation, ()) if dep not in tasks]
            if unknown:
                verb = "depends on" if relation == "dependencies" else "is fed by (sources)"
                raise ConfigurationError(
                    f"task {cls.__name__} ({task_type}) {verb} unregistered task type(s): "
                    + ", ".join(sorted(unknown))
                )
    done: set[str] = set()

    def edges(task_type: str) -> list[tuple[str, str]]:
        cls = tasks[task_type]
        return [(d, "") for d in cls.dependencies] + [
            (s, " (source)") for s in getattr(cls, "sources", ())
        ]

    def visit(task_type: str, path: list[tuple[str, str]]) -> None:
        names = [name for name, _ in path]
        if task_type in names:
            cycle = [*path[names.index(task_type) :], (task_type, "")]
            labels = [label for _, label in cycle]
            text = " -> ".join(f"{name}{label}" for name, label in cycle)
            what = "cycle among sources and dependencies" if any(labels) else "dependency cycle"
            raise ConfigurationError(f"{what}: {text}")
        if task_type in done:
            return
        for dep, label in edges(task_type):
            visit(dep, [*path, (task_type, label)])
        done.add(task_type)

    for task_type in sorted(tasks):
        visit(task_type, [])
