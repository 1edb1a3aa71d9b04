"""One immutable record per message kind: what :func:`~zmqpipeline.protocol.decode`
returns (the table in :mod:`zmqpipeline.protocol` says which kind each is)."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "Ack",
    "Alive",
    "Bye",
    "Control",
    "ControlReply",
    "Credit",
    "Data",
    "Disconnect",
    "End",
    "Fail",
    "Finished",
    "HandBack",
    "Heartbeat",
    "Hello",
    "Job",
    "Meta",
    "MetaOk",
    "Ping",
    "Push",
    "PushClose",
    "PushReply",
    "Ready",
    "Recall",
    "Reply",
    "Request",
    "RequestError",
    "Reset",
    "Result",
    "SReady",
    "Skip",
    "Start",
    "Welcome",
    "WorkerError",
    "WorkerReply",
]


class Ready(NamedTuple):
    task_type: str
    capacity: int
    free: int
    threads: int


class Recall(NamedTuple):
    n: int


class HandBack(NamedTuple):
    seqs: list[int]


class Welcome(NamedTuple):
    run: int
    metadata: dict[str, Any]
    options: dict[str, Any]  # how this task's workers should work (e.g. result_linger_s)


class Data(NamedTuple):
    run: int
    items: list[list[Any]]  # [[seq, payload], ...]
    tokens: bytes = b""  # the tokens covering the items' seqs (protocol.tokens)


class Credit(NamedTuple):
    n: int


class Fail(NamedTuple):
    seq: int
    error: str
    exc_types: list[str]


class Heartbeat(NamedTuple):
    worker_id: bytes


class Alive(NamedTuple):
    pass


class Reset(NamedTuple):
    pass


class Bye(NamedTuple):
    seqs: list[int]


class End(NamedTuple):
    run: int
    summary: dict[str, Any]


class Result(NamedTuple):
    run: int
    task_type: str
    worker_id: bytes
    items: list[list[Any]]  # [[seq, result or None], ...]
    tokens: bytes = b""  # the tokens (DATA's) covering the results' seqs


class Ping(NamedTuple):
    run: int


class Hello(NamedTuple):
    collector_id: bytes


class Start(NamedTuple):
    run: int
    metadata: dict[str, Any]
    task_types: list[str]
    forward: list[str]  # results of these task types ride on their ACK (they feed stages)
    quiet: list[str]  # results of these are ACKed (and forwarded) without handle_collection
    key: bytes = b""  # the run's item-token key (protocol.tokens); b"": results unchecked


class Skip(NamedTuple):
    run: int
    task_type: str
    seq: int


class Ack(NamedTuple):
    run: int
    # [[task_type, worker_id, seqs, ack_data, errors, results, firsts], ...]: see ack_group
    groups: list[list[Any]]


class Finished(NamedTuple):
    run: int


class Meta(NamedTuple):
    metadata: dict[str, Any]


class MetaOk(NamedTuple):
    pass


class SReady(NamedTuple):
    task_type: str


class Request(NamedTuple):
    request_id: int
    task_type: str
    data: Any


class Job(NamedTuple):
    client: bytes
    request_id: int
    data: Any


class WorkerReply(NamedTuple):
    client: bytes
    request_id: int
    data: Any


class Reply(NamedTuple):
    request_id: int
    data: Any


class WorkerError(NamedTuple):
    client: bytes
    request_id: int
    error: str


class RequestError(NamedTuple):
    request_id: int
    error: str


class Disconnect(NamedTuple):
    pass


class Control(NamedTuple):
    request_id: int
    command: str
    args: dict[str, Any]


class ControlReply(NamedTuple):
    request_id: int
    ok: bool
    body: dict[str, Any]


class Push(NamedTuple):
    request_id: int
    task_type: str
    items: list[dict[str, Any]]


class PushClose(NamedTuple):
    request_id: int
    task_type: str


class PushReply(NamedTuple):
    request_id: int
    ok: bool
    error: str
    accepted: int
