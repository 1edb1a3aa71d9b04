"""The processes of ``benchmarks/hosts.py``, each started inside a host's network namespace:
``python benchmarks/_hosts_roles.py ROLE CONFIG`` (ROLE: distributor, collector, worker, relay).

CONFIG is a JSON file: ``work``, ``results``, ``acks`` (the endpoints the distributor and the
collector bind), ``n`` items that each sleep ``delay`` seconds, where the collector writes
``results_file`` and the distributor ``report_file``. A worker connects to ``HOSTS_WORK`` and
``HOSTS_RESULTS`` from its environment (its host's view: straight to the distributor's host,
or through the relay) and stamps each result with ``HOSTS_HOST``, its pid and when it ran the
item. The relay forwards ``HOSTS_RELAY`` (``port=host:port,...``) from 127.0.0.1, holding back
every byte ``HOSTS_RELAY_DELAY_S`` in each direction.

Times are ``time.monotonic()``: every namespace shares the machine's clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import asdict
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import zmqpipeline as zp

__all__ = ["main"]

TASK_TYPE = "HOSTS_SLEEP"


def _cpu_s() -> float:
    """This process's CPU seconds, every thread (user + system)."""
    times = os.times()
    return times.user + times.system


def run_distributor(config: dict[str, Any]) -> None:
    """Hand out ``n`` items; write the RunReport, first/last hand-out times and the CPU."""
    stamps: dict[str, float] = {}
    n_items, delay = int(config["n"]), float(config["delay"])

    class SleepTask(zp.Task):
        task_type = zp.TaskType.register_type(TASK_TYPE)
        endpoint = zp.EndpointAddress(config["work"])

        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def handle(self, data: Any, address: Any, msgtype: Any) -> dict[str, Any]:
            self.n += 1
            if self.n == 1:
                stamps.update(first_s=time.monotonic(), first_cpu_s=_cpu_s())
            if self.n >= n_items:
                self.is_complete = True
                stamps.update(last_s=time.monotonic(), last_cpu_s=_cpu_s())
            return {"i": self.n, "delay": delay}

    distributor = zp.Distributor(
        zp.EndpointAddress(config["results"]), zp.EndpointAddress(config["acks"]), tasks=[SleepTask]
    )
    report = distributor.run()
    out = {"report": asdict(report), **stamps, "end_s": time.monotonic(), "cpu_s": _cpu_s()}
    with open(config["report_file"], "w") as sink:
        json.dump(out, sink, default=str)


def run_collector(config: dict[str, Any]) -> None:
    """Keep (host, pid, started, ended) of every result; write them when the run ends."""

    class StampCollector(zp.Collector):
        endpoint = zp.EndpointAddress(config["results"])
        ack_endpoint = zp.EndpointAddress(config["acks"])

        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[Any]] = []

        def handle_collection(self, data: Any, task_type: Any, msgtype: Any) -> None:
            self.rows.append([data["h"], data["p"], data["s"], data["e"]])

        def handle_finished(self, data: dict[str, Any], task_type: str) -> None:
            out = {"rows": self.rows, "finished_s": time.monotonic(), "summary": data}
            with open(config["results_file"], "w") as sink:
                json.dump(out, sink, default=str)

    StampCollector().run()


def run_worker() -> None:
    """One single-threaded worker that sleeps each item's ``delay``."""
    host, pid = int(os.environ["HOSTS_HOST"]), os.getpid()

    class SleepWorker(zp.SingleThreadedWorker):
        task_type = zp.TaskType.register_type(TASK_TYPE)
        endpoint = zp.EndpointAddress(os.environ["HOSTS_WORK"])
        collector_endpoint = zp.EndpointAddress(os.environ["HOSTS_RESULTS"])

        def handle_execution(self, data: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
            started = time.monotonic()
            time.sleep(data["delay"])
            return {"h": host, "p": pid, "s": started, "e": time.monotonic()}

    SleepWorker().run()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk sent ``delay`` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send() -> None:
        while True:
            due, data = await chunks.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(1 << 16):
            chunks.put_nowait((loop.time() + delay, data))
    except ConnectionError:
        pass
    chunks.put_nowait((loop.time() + delay, b""))
    try:
        await sender
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _relay(routes: dict[int, tuple[str, int]], delay: float) -> None:
    async def serve(port: int) -> asyncio.Server:
        target_host, target_port = routes[port]

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection(target_host, target_port)
            except OSError as error:  # the run has ended: the collector is gone
                print(f"relay: {target_host}:{target_port}: {error.strerror}", file=sys.stderr)
                writer.close()
                return
            await asyncio.gather(_pipe(reader, up_writer, delay), _pipe(up_reader, writer, delay))

        return await asyncio.start_server(client, "127.0.0.1", port)

    servers = [await serve(port) for port in routes]
    print("READY", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def run_relay() -> None:
    """Forward each ``port=host:port`` of ``HOSTS_RELAY``, delaying bytes both ways."""
    routes: dict[int, tuple[str, int]] = {}
    for route in os.environ["HOSTS_RELAY"].split(","):
        port, _, target = route.partition("=")
        host, _, target_port = target.rpartition(":")
        routes[int(port)] = (host, int(target_port))
    asyncio.run(_relay(routes, float(os.environ["HOSTS_RELAY_DELAY_S"])))


def main(role: str, config_path: str) -> None:
    """Run ``role`` with the configuration in ``config_path``."""
    with open(config_path) as source:
        config = json.load(source)
    if role == "distributor":
        run_distributor(config)
    elif role == "collector":
        run_collector(config)
    elif role == "worker":
        run_worker()
    elif role == "relay":
        run_relay()
    else:
        raise SystemExit(f"unknown role {role!r} (distributor, collector, worker, relay)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
