"""The 2014 message-type names, kept so user code that inspects ``msgtype`` keeps working.

The wire format itself lives in :mod:`zmqpipeline.protocol`; these names are what user
callbacks receive as their ``msgtype`` argument (``Task.handle`` gets
``MESSAGE_TYPE_DATA``, ``Collector.handle_collection`` gets ``MESSAGE_TYPE_SUCCESS``, ...).
The ``create_*`` helpers build the plain dicts the old API passed around.
"""

from __future__ import annotations

from typing import Any, overload

__all__ = [
    "MESSAGE_TYPES",
    "MESSAGE_TYPE_ACK",
    "MESSAGE_TYPE_DATA",
    "MESSAGE_TYPE_EMPTY",
    "MESSAGE_TYPE_END",
    "MESSAGE_TYPE_FAILURE",
    "MESSAGE_TYPE_META_DATA",
    "MESSAGE_TYPE_READY",
    "MESSAGE_TYPE_SUCCESS",
    "create",
    "create_ack",
    "create_data",
    "create_empty",
    "create_end",
    "create_failure",
    "create_metadata",
    "create_ready",
    "create_success",
    "get",
]

MESSAGE_TYPE_ACK = "ACK"
MESSAGE_TYPE_SUCCESS = "SUCCESS"
MESSAGE_TYPE_FAILURE = "FAILURE"
MESSAGE_TYPE_READY = "READY"
MESSAGE_TYPE_END = "END"
MESSAGE_TYPE_DATA = "DATA"
MESSAGE_TYPE_META_DATA = "META_DATA"
MESSAGE_TYPE_EMPTY = "EMPTY"

MESSAGE_TYPES = frozenset(
    {
        MESSAGE_TYPE_ACK,
        MESSAGE_TYPE_SUCCESS,
        MESSAGE_TYPE_FAILURE,
        MESSAGE_TYPE_READY,
        MESSAGE_TYPE_END,
        MESSAGE_TYPE_DATA,
        MESSAGE_TYPE_META_DATA,
        MESSAGE_TYPE_EMPTY,
    }
)


def create(msgtype: str, task_type: str = "", data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A message as the old API represented it: ``{'msgtype', 'task_type', 'data'}``."""
    if msgtype not in MESSAGE_TYPES:
        raise ValueError(f"unknown message type {msgtype!r}")
    return {"msgtype": msgtype, "task_type": task_type, "data": data if data is not None else {}}


def create_ack(task_type: str = "", data: dict[str, Any] | None = None) -> dict[str, Any]:
    return create(MESSAGE_TYPE_ACK, task_type, data)


def create_success(task_type: str = "", data: dict[str, Any] | None = None) -> dict[str, Any]:
    return create(MESSAGE_TYPE_SUCCESS, task_type, data)


def create_failure(task_type: str = "", data: dict[str, Any] | None = None) -> dict[str, Any]:
    return create(MESSAGE_TYPE_FAILURE, task_type, data)


def create_ready(task_type: str = "", data: dict[str, Any] | None = None) -> dict[str, Any]:
    return create(MESSAGE_TYPE_READY, task_type, data)


def create_end(task_type: str = "", data: dict[str, Any] | None = None) -> dict[str, Any]:
    return create(MESSAGE_TYPE_END, task_type, data)


def create_data(task_type: str = "", data: dict[str, Any] | None = None) -> dict[str, Any]:
    return create(MESSAGE_TYPE_DATA, task_type, data)


def create_metadata(data: dict[str, Any] | None = None) -> dict[str, Any]:
    return create(MESSAGE_TYPE_META_DATA, "", data)


def create_empty(task_type: str = "") -> dict[str, Any]:
    return create(MESSAGE_TYPE_EMPTY, task_type)


@overload
def get(message: dict[str, Any]) -> tuple[Any, str, str]: ...


@overload
def get(message: dict[str, Any], key: str, default: Any = None) -> Any: ...


def get(message: dict[str, Any], key: str | None = None, default: Any = None) -> Any:
    """The 2014 call ``get(message)`` returns the tuple ``(data, task_type, msgtype)``.

    With ``key`` (``'msgtype'``, ``'task_type'``, ``'data'``) it returns that one value,
    or ``default`` when the message lacks it.
    """
    if key is not None:
        return message.get(key, default)
    return message.get("data", {}), message.get("task_type", ""), message["msgtype"]
