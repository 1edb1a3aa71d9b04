"""Stages and open-ended tasks driven by hand: stage and open task classes, a worker
that joins, credit given."""

from __future__ import annotations

from typing import Any

from support.scheduling import EP, EP_B, sent
from zmqpipeline import (
    EndpointAddress,
    Task,
    TaskType,
    protocol,
)

for _name in ("THIRD", "PUSHED", "PUSHED2", "ST_A", "ST_B", "ST_C", "ST_P"):
    TaskType.register_type(_name)


EP_C = "ipc://c.ipc"


def stage_class(
    task_type: str,
    sources: list[str],
    endpoint: str = EP_B,
    derive: Any = None,
    collect_results: bool = True,
    dependencies: tuple[str, ...] = (),
) -> type[Task]:
    """A stage whose ``derive`` is ``derive(result, item_id)`` (default: one item per result)."""

    class Stage(Task):
        def derive(self, result, item_id):
            if derive is None:
                return {"from": item_id, **result}
            return derive(result, item_id)

    Stage.task_type = TaskType(task_type)
    Stage.endpoint = EndpointAddress(endpoint)
    Stage.sources = [TaskType(s) for s in sources]
    Stage.dependencies = [TaskType(d) for d in dependencies]
    Stage.collect_results = collect_results
    Stage.__name__ = f"Stage{task_type}"
    return Stage


def open_class(task_type: str, endpoint: str = EP) -> type[Task]:
    class Open(Task):
        open_ended = True

    Open.task_type = TaskType(task_type)
    Open.endpoint = EndpointAddress(endpoint)
    return Open


def join(s, endpoint: str, wid: bytes, task_type: str, capacity: int = 4) -> None:
    s.on_worker_message(endpoint, wid, protocol.Ready(task_type, capacity, capacity, 1), 0.0)
    s.on_worker_message(endpoint, wid, protocol.Credit(0), 0.0)


def credit(s, endpoint: str, wid: bytes, n: int, now: float) -> list[Any]:
    s.on_worker_message(endpoint, wid, protocol.Credit(n), now)
    s.dispatch(now)
    return sent(s, now)
