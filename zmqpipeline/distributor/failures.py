"""Failures for good: the one record every path builds (:func:`failure`), and
:class:`Failures`, which keeps each in its task's report *and* in the journal, so a resumed
run reports every failure its first part had: an item whose tries ran out, user code of the
task that raised (``handle``, ``initialize``...), a stage's ``derive`` that raised."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from ..errors import MessageTooLarge
from ..utils.serializer import find_unpackable
from .state import COLLECTOR, Item, SchedulerPart, TaskState

if TYPE_CHECKING:
    pass

__all__ = [
    "NOT_RETRYABLE",
    "Failure",
    "Failures",
    "failure",
    "made_again_on_resume",
    "unsendable",
]

logger = logging.getLogger("zmqpipeline.distributor")


#: Errors no retry can mend (a worker names them in its FAIL): a value msgpack cannot
#: carry, a message over ``max_message_bytes``. Their item fails at once.
NOT_RETRYABLE = frozenset({"SerializationError", "MessageTooLarge"})


def unsendable(task_type: str, seq: int, payload: Any, exc: Exception) -> str:
    """Why item ``TASK/seq`` cannot be sent, in the item's own terms: the key path inside
    it and the value's type (not the message's frame layout)."""
    name = type(exc).__name__
    if isinstance(exc, MessageTooLarge):
        return (
            f"{name}: item {task_type}/{seq} of task type {task_type!r} is too large to send: {exc}"
        )
    try:
        found = find_unpackable(payload)
    except RecursionError:
        found = None
    if found is None:
        return f"{name}: item {task_type}/{seq} of task type {task_type!r} cannot be sent: {exc}"
    path, kind = found
    return (
        f"{name}: item {task_type}/{seq} of task type {task_type!r} cannot be sent: "
        f"the value at {path} is {kind}, "
        "which msgpack cannot carry (dict, list, str, bytes, int, float, bool, None, "
        "datetime, date, timedelta)"
    )


class Failure(TypedDict):
    """One failure for good, as the report, END, the status and the journal hold it."""

    task_type: str
    seq: int | None  # None: no item (the task's own code raised, or a derive)
    item_id: str
    attempts: int
    deaths: int
    error: str
    data: Any


def failure(
    task_type: str,
    error: str,
    data: Any,
    *,
    seq: int | None = None,
    item_id: str,
    attempts: int = 1,
    deaths: int = 0,
) -> Failure:
    """The record of one failure (the only place one is built)."""
    return {
        "task_type": task_type,
        "seq": seq,
        "item_id": item_id,
        "attempts": attempts,
        "deaths": deaths,
        "error": error,
        "data": data,
    }


def made_again_on_resume(record: Mapping[str, Any]) -> bool:
    """True for a failure of the task's own code (``handle``...): a resumed task calls it
    again, so the journaled record gives way to what happens then. An item's failure, or
    a ``derive`` that raised on a result collected before the crash, stays reported."""
    return record["seq"] is None and "/derive(" not in record["item_id"]


class Failures(SchedulerPart):
    """Records every failure for good of one run (see the module's docstring)."""

    def record(self, state: TaskState, record: Failure) -> None:
        state.failed.append(record)
        self.s.journal.failed(record)

    def item_failed(self, state: TaskState, item: Item, error: str) -> None:
        """``item`` failed for good: record it, tell the collector it will not come."""
        s = self.s
        del state.in_flight[item.seq]
        item_id = f"{state.task_type}/{item.seq}"
        self.record(
            state,
            failure(
                state.task_type,
                error,
                item.payload,
                seq=item.seq,
                item_id=item_id,
                attempts=item.attempts,
                deaths=item.deaths,
            ),
        )
        logger.error(
            "item %s failed for good (%d error(s), %d death(s)): %s",
            item_id,
            item.attempts,
            item.deaths,
            (error.strip().splitlines() or [""])[-1],
        )
        s.outbox.append((COLLECTOR, None, s.codec.skip(s.run, state.task_type, item.seq)))
        s.recurring.failed(state, item, error)  # a scheduled job's run failed (.recurring)
        s.check_finished(state)

    def task_code_failed(self, state: TaskState, error: str, where: str) -> None:
        """User code in the task raised: a reported failure. By default the task hands
        out nothing more (``Task.continue_after_error`` chooses to go on)."""
        state.handle_errors += 1
        call = state.next_seq + state.handle_errors
        item_id = f"{state.task_type}/{where}#{call}"
        self.record(state, failure(state.task_type, error, None, item_id=item_id))
        if not state.task.continue_after_error:
            logger.error(
                "task %s stops handing out: %s() failed on call %d "
                "(set continue_after_error to go on)",
                state.task_type,
                where,
                call,
            )
            state.task.is_complete = True

    def derive_failed(self, stage: TaskState, source_id: str, result: Any, error: str) -> None:
        """``derive`` raised on one result: a reported failure of that result (the report
        lists it, the run is not ok); the stage goes on with the next result."""
        item_id = f"{stage.task_type}/derive({source_id})"
        self.record(stage, failure(stage.task_type, error, result, item_id=item_id))
