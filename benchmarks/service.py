"""Service mode: requests/s and median/p99 round-trip latency, beside bare pyzmq.

For 1 and 4 clients over 2 workers, every role its own process:

* **zmqpipeline**: ``ServiceClient.request`` → ``Service`` → ``ServiceWorker`` (heartbeats,
  per-request state, re-routing: everything the guarantees cost).
* **bare pyzmq**: the guide's extended request-reply — REQ clients → ``zmq.proxy``
  (ROUTER frontend, DEALER backend, in C) → REP workers. Same msgpack encode/decode and
  the same upper-casing on both sides, no heartbeats, no recovery from a lost worker.

Each client sends its requests one at a time (send, wait for the reply, send the next)
after a warm-up, all clients starting together; req/s is all requests over the wall time
from the common start to the last reply.

    python benchmarks/service.py                   # 10000 requests per row, ipc
    python benchmarks/service.py --quick           # 2000 per row
    python benchmarks/service.py --transport tcp --repeat 3
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import msgpack
import zmq

import zmqpipeline as zp
from zmqpipeline.runtime.ports import free_port

FORK = multiprocessing.get_context("fork")
TASK_TYPE = zp.TaskType.register_type("BENCH_UPPER")
WARMUP = 50
PAYLOAD = {"message": "hello world", "n": 0}
WORKERS = 2


def _upper(data: dict[str, Any]) -> dict[str, Any]:
    return {"message": data["message"].upper(), "n": data["n"]}


# -- zmqpipeline ------------------------------------------------------------------------


def _zp_service(front: str, back: str) -> None:
    zp.Service(front, back).run()


def _zp_worker(back: str) -> None:
    class Upper(zp.ServiceWorker):
        task_type = TASK_TYPE
        endpoint = zp.EndpointAddress(back)

        def handle_message(self, data: Any, task_type: str, msgtype: str) -> Any:
            return _upper(data)

    Upper().run()


def _zp_client(front: str, n: int, barrier: Any, conn: Any) -> None:
    with zp.ServiceClient(front, TASK_TYPE, timeout=30) as client:
        ask: Callable[[dict[str, Any]], Any] = client.request
        _measure(ask, n, barrier, conn)


# -- bare pyzmq -------------------------------------------------------------------------


def _bare_broker(front: str, back: str) -> None:
    ctx = zmq.Context()
    frontend = ctx.socket(zmq.ROUTER)
    frontend.bind(front)
    backend = ctx.socket(zmq.DEALER)
    backend.bind(back)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    zmq.proxy(frontend, backend)


def _bare_worker(back: str) -> None:
    sock = zmq.Context().socket(zmq.REP)
    sock.connect(back)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        data = msgpack.unpackb(sock.recv(), raw=False)
        sock.send(msgpack.packb(_upper(data), use_bin_type=True))


def _bare_client(front: str, n: int, barrier: Any, conn: Any) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.connect(front)

    def ask(data: dict[str, Any]) -> Any:
        sock.send(msgpack.packb(data, use_bin_type=True))
        return msgpack.unpackb(sock.recv(), raw=False)

    _measure(ask, n, barrier, conn)
    sock.close(linger=0)
    ctx.term()


# -- the measurement --------------------------------------------------------------------


def _measure(ask: Callable[[dict[str, Any]], Any], n: int, barrier: Any, conn: Any) -> None:
    for i in range(WARMUP):
        ask({**PAYLOAD, "n": i})
    barrier.wait()
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        sent = time.perf_counter()
        reply = ask({**PAYLOAD, "n": i})
        latencies.append(time.perf_counter() - sent)
        if reply["n"] != i:
            raise AssertionError(f"reply {reply!r} for request {i}")
    conn.send((start, time.perf_counter(), latencies))
    conn.close()


def _run(impl: str, clients: int, total: int, transport: str, folder: str) -> dict[str, float]:
    if transport == "tcp":
        front, back = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    else:
        front, back = f"ipc://{folder}/{impl}-f.ipc", f"ipc://{folder}/{impl}-b.ipc"
    broker, worker, client = {
        "zmqpipeline": (_zp_service, _zp_worker, _zp_client),
        "bare pyzmq": (_bare_broker, _bare_worker, _bare_client),
    }[impl]
    per_client = total // clients
    barrier = FORK.Barrier(clients)
    started = [FORK.Process(target=broker, args=(front, back))]
    started += [FORK.Process(target=worker, args=(back,)) for _ in range(WORKERS)]
    pipes = []
    for _ in range(clients):
        receive, send = FORK.Pipe(duplex=False)
        pipes.append(receive)
        started.append(FORK.Process(target=client, args=(front, per_client, barrier, send)))
    for process in started:
        process.start()
    try:
        results = [pipe.recv() for pipe in pipes]
    finally:
        started[0].terminate()  # SIGTERM: the Service tells its workers to stop
        for process in started[1:]:
            process.join(5)
            if process.exitcode is None:
                process.terminate()
        for process in started:
            process.join(5)
            if process.exitcode is None:
                process.kill()
                process.join()
    begin = min(r[0] for r in results)
    end = max(r[1] for r in results)
    latencies = sorted(x for r in results for x in r[2])
    return {
        "requests": len(latencies),
        "rps": len(latencies) / (end - begin),
        "median_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="per row (all clients)")
    parser.add_argument("--quick", action="store_true", help="2000 requests per row")
    parser.add_argument("--transport", choices=["ipc", "tcp"], default="ipc")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row; the best is shown")
    args = parser.parse_args()
    total = 2000 if args.quick else args.requests
    print(
        f"service mode, {WORKERS} workers, {args.transport}, {total} requests per row, "
        f"best of {args.repeat}; {os.cpu_count()} CPUs"
    )
    header = (
        f"{'implementation':<14} {'clients':>7} {'req/s':>9} {'median ms':>10} "
        f"{'p99 ms':>8} {'req/s vs bare':>14}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="zp-bench-service-") as folder:
        for clients in (1, 4):
            rows = {}
            for impl in ("bare pyzmq", "zmqpipeline"):
                runs = [
                    _run(impl, clients, total, args.transport, folder) for _ in range(args.repeat)
                ]
                rows[impl] = max(runs, key=lambda r: r["rps"])
            for impl, row in rows.items():
                ratio = row["rps"] / rows["bare pyzmq"]["rps"]
                print(
                    f"{impl:<14} {clients:>7} {row['rps']:>9.0f} {row['median_ms']:>10.3f} "
                    f"{row['p99_ms']:>8.3f} {ratio:>13.0%}"
                )


if __name__ == "__main__":
    main()
