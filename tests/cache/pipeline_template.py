"""A pipeline the cache tests copy into a folder of their own with a ``config.json`` beside
it, and run with ``zmqpipeline run`` (or role by role). Not a test module itself."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import zmqpipeline
from zmqpipeline import Collector, EndpointAddress, SingleThreadedWorker, Task, TaskType

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "config.json")) as _config:
    CONFIG: dict[str, Any] = json.load(_config)
EP = CONFIG["endpoints"]

TaskType.register_type("SQUARE")
TaskType.register_type("PLUS_ONE")


class Squares(Task):
    task_type = TaskType("SQUARE")
    endpoint = EndpointAddress(EP["square"])
    cache = zmqpipeline.Cache(CONFIG["cache_dir"], expire=CONFIG.get("expire"))
    max_attempts = 1

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[int] = CONFIG["inputs"]
        self.n_items = len(self.inputs)
        self.i = 0

    def handle(self, data: dict[str, Any], address: bytes, msgtype: str) -> dict[str, Any]:
        value = self.inputs[self.i]
        self.i += 1
        if self.i == len(self.inputs):
            self.is_complete = True
        return {"value": value}


class Square(SingleThreadedWorker):
    task_type = TaskType("SQUARE")
    endpoint = EndpointAddress(EP["square"])
    collector_endpoint = EndpointAddress(EP["results"])

    def handle_execution(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        with open(CONFIG["executed"], "a") as out:
            out.write(f"SQUARE {data['value']}\n")
        if data["value"] in CONFIG.get("fail_on", []):
            raise ValueError(f"item {data['value']} is poison")
        time.sleep(CONFIG.get("delay_s", 0))
        return {"value": data["value"], "square": data["value"] ** 2}  # WORKER_BODY


if CONFIG.get("stage"):

    class PlusOnes(Task):
        """A streaming stage fed by the cached task's results (not cached itself)."""

        task_type = TaskType("PLUS_ONE")
        endpoint = EndpointAddress(EP["plus_one"])
        sources = [TaskType("SQUARE")]  # noqa: RUF012

        def derive(self, result: dict[str, Any], item_id: str) -> dict[str, Any]:
            return {"value": result["square"]}

    class PlusOne(SingleThreadedWorker):
        task_type = TaskType("PLUS_ONE")
        endpoint = EndpointAddress(EP["plus_one"])
        collector_endpoint = EndpointAddress(EP["results"])

        def handle_execution(
            self, data: dict[str, Any], *args: Any, **kwargs: Any
        ) -> dict[str, Any]:
            with open(CONFIG["executed"], "a") as out:
                out.write(f"PLUS_ONE {data['value']}\n")
            return {"value": data["value"] + 1}


class Gather(Collector):
    endpoint = EndpointAddress(EP["results"])
    ack_endpoint = EndpointAddress(EP["ack"])

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []

    def handle_collection(
        self, data: dict[str, Any], task_type: str, msgtype: str
    ) -> dict[str, Any] | None:
        self.seen.append(
            {
                "task_type": task_type,
                "item_id": self.item_id,
                "value": data.get("value"),
                "square": data.get("square"),
                "cached": self.from_cache,
                "msgtype": msgtype,
            }
        )
        return None

    def handle_finished(self, data: dict[str, Any], task_type: str) -> None:
        with open(CONFIG["collected"], "w") as out:
            json.dump({"seen": self.seen, "finished": data}, out)
