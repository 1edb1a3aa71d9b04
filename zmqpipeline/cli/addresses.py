"""The private addresses of a local run: every role of ``zmqpipeline run`` is pointed at ipc
files in the run's private directory (or free 127.0.0.1 ports), the same user address
always at the same private one."""

from __future__ import annotations

from ..runtime.ports import free_port
from .discovery import Pipeline

__all__ = ["rewrite_endpoints"]


def rewrite_endpoints(pipeline: Pipeline, directory: str, tcp: bool = False) -> dict[str, str]:
    """Point every role at ipc files in ``directory`` (same original address, same file),
    or with ``tcp`` at free ports on 127.0.0.1."""
    mapping: dict[str, str] = {}

    def private(address: str) -> str:
        if address not in mapping:
            mapping[address] = (
                f"tcp://127.0.0.1:{_free_port()}"
                if tcp
                else f"ipc://{directory}/{len(mapping)}.ipc"
            )
        return mapping[address]

    for cls in [
        *pipeline.tasks,
        *pipeline.workers,
        *pipeline.collectors,
        *pipeline.metadata_workers,
    ]:
        for attr in ("endpoint", "collector_endpoint", "ack_endpoint"):
            if attr in _own_or_inherited(cls):
                setattr(cls, attr, private(getattr(cls, attr)))
    return mapping


def _free_port() -> int:
    return free_port("127.0.0.1")


def _own_or_inherited(cls: type) -> set[str]:
    return {
        attr
        for attr in ("endpoint", "collector_endpoint", "ack_endpoint")
        if getattr(cls, attr, None) is not None
    }
