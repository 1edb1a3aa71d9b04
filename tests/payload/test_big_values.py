"""Items and results of megabytes: big values travel as frames beside the msgpack body
(zmqpipeline.protocol.frames), byte for byte, over ipc, tcp and CURVE; an item over the
per-item limit fails alone; NumPy arrays keep their dtype and shape. Real processes over
real sockets; no mocks."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from support.procs import free_port

import zmqpipeline as zp
from zmqpipeline.security import ENV_AUTHORIZED_KEYS, ENV_SECRET_KEY, ENV_SERVER_KEY, generate_keys

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024
zp.TaskType.register_type("BIG")


def blob(i: int, size: int) -> bytes:
    """Item ``i``'s bytes: different for every item, the same in every process."""
    return random.Random(i).randbytes(size)


def sha(value: Any) -> str:
    return hashlib.sha256(value).hexdigest()


def big_pipeline(ep: SimpleNamespace, n: int, sizes: Callable[[int], int], out: Path):
    """A task of ``n`` items ``{'i', 'blob'}``, a worker that checks each blob and sends
    it back in its result, a collector that writes what it saw to ``out``."""

    class BigTask(zp.Task):
        task_type = zp.TaskType("BIG")
        endpoint = zp.EndpointAddress(ep.worker)

        def initialize(self, metadata: Any = None) -> None:
            self.i = 0

        def handle(self, data: Any, address: Any, msgtype: Any) -> dict[str, Any]:
            i, self.i = self.i, self.i + 1
            self.is_complete = self.i >= n
            return {"i": i, "blob": blob(i, sizes(i))}

    class EchoWorker(zp.SingleThreadedWorker):
        task_type = zp.TaskType("BIG")
        endpoint = zp.EndpointAddress(ep.worker)
        collector_endpoint = zp.EndpointAddress(ep.collector)

        def handle_execution(self, data: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
            value = data["blob"]
            return {"i": data["i"], "in": sha(value), "type": type(value).__name__, "back": value}

    class CheckingCollector(zp.Collector):
        endpoint = zp.EndpointAddress(ep.collector)
        ack_endpoint = zp.EndpointAddress(ep.ack)
        seen: ClassVar[list[Any]] = []

        def handle_collection(self, data: Any, task_type: Any, msgtype: Any) -> None:
            back = data["back"]
            self.seen.append([data["i"], data["in"], sha(back), data["type"], type(back).__name__])

        def handle_finished(self, data: Any, task_type: Any) -> None:
            out.write_text(json.dumps(self.seen))

    return BigTask, EchoWorker, CheckingCollector


def run_distributor(ep: SimpleNamespace, task: type[zp.Task]) -> None:
    report = zp.Distributor(ep.collector, ep.ack, tasks=[task]).run()
    failed = [{k: v for k, v in f.items() if k != "data"} for f in report.failed]
    Path(ep.report).write_text(json.dumps({"collected": report.collected, "failed": failed}))


def in_env(env: dict[str, str], target: Callable[[], Any]) -> Callable[[], Any]:
    """``target`` run with ``env`` set (in the forked child)."""

    def run() -> Any:
        os.environ.update(env)
        return target()

    return run


def curve_env(folder: Path) -> dict[str, dict[str, str]]:
    """CURVE settings for a server key and one authorised client key."""
    server_public, _ = generate_keys(folder, "server")
    authorized = folder / "authorized"
    authorized.mkdir()
    client_public, _ = generate_keys(folder, "client")
    os.rename(client_public, authorized / client_public.name)

    def env(name: str) -> dict[str, str]:
        return {
            ENV_SECRET_KEY: str(folder / f"{name}.key_secret"),
            ENV_SERVER_KEY: str(server_public),
            ENV_AUTHORIZED_KEYS: str(authorized),
        }

    return {"server": env("server"), "client": env("client")}


def start(procs: Any, ep: SimpleNamespace, classes: Any, env: dict[str, dict[str, str]]) -> None:
    task, worker, collector = classes
    server, client = env.get("server", {}), env.get("client", {})
    procs.start("collector", in_env(server, lambda: collector().run()))
    procs.start("distributor", in_env(server, lambda: run_distributor(ep, task)))
    procs.start("worker", in_env(client, lambda: worker().run()))


@pytest.mark.parametrize("size_mib", [1, 8, 32])
@pytest.mark.parametrize("link", ["ipc", "tcp", "curve"])
def test_items_and_results_of_megabytes_round_trip_byte_for_byte(
    procs, tmp_path, size_mib, link, request
):
    kind = "ipc" if link == "ipc" else "tcp"
    ep = request.getfixturevalue("endpoints") if kind == "ipc" else tcp_endpoints(tmp_path)
    env = curve_env(tmp_path / "keys") if link == "curve" else {}
    n, size = 3, size_mib * MiB
    out = tmp_path / "seen.json"
    start(procs, ep, big_pipeline(ep, n, lambda i: size, out), env)
    assert set(procs.join(90).values()) == {0}
    seen = json.loads(out.read_text())
    assert sorted(row[0] for row in seen) == list(range(n))  # each item once
    for i, got_in, got_back, type_in, type_back in seen:
        expected = sha(blob(i, size))
        assert got_in == expected, f"item {i} changed on its way to the worker"
        assert got_back == expected, f"item {i}'s result changed on its way to the collector"
        assert (type_in, type_back) == ("memoryview", "memoryview")  # not copied on receipt


def tcp_endpoints(tmp_path: Path) -> SimpleNamespace:
    def make() -> str:
        return f"tcp://127.0.0.1:{free_port()}"

    return SimpleNamespace(
        worker=make(), collector=make(), ack=make(), report=tmp_path / "report.json"
    )


def test_an_item_over_the_per_item_limit_fails_alone_naming_its_size_and_the_limit(
    procs, endpoints, tmp_path
):
    limit = 4 * MiB
    env = {"ZMQPIPELINE_MAX_MESSAGE_BYTES": str(limit)}
    out = tmp_path / "seen.json"
    sizes = {2: 5 * MiB}  # item 2 is over the limit, the others well under it
    classes = big_pipeline(endpoints, 5, lambda i: sizes.get(i, MiB), out)
    start(procs, endpoints, classes, {"server": env, "client": env})
    assert procs.join(60)["distributor"] == 0
    seen = json.loads(out.read_text())
    assert sorted(row[0] for row in seen) == [0, 1, 3, 4]  # the run went on without it
    report = json.loads(Path(endpoints.report).read_text())
    assert report["collected"] == {"BIG": 4}
    [failed] = report["failed"]
    assert failed["seq"] == 2
    assert "per-item limit of 4194304" in failed["error"]
    size = int(re.search(r"is (\d+) bytes", failed["error"]).group(1))  # type: ignore[union-attr]
    assert 5 * MiB < size < 5 * MiB + 100  # its 5 MiB of bytes and its small body
