"""Streaming stages against the dependency barrier: two stages of 10 ms items.

Stage A hands out N items; stage B gets one item per A result. With ``dependencies`` (the
barrier) B starts only when every A item is collected: about twice one stage's time.
With ``sources`` (streaming) B is fed by each A result as it is collected: the ideal
of a pipelined chain is one stage's time plus one item, ``N x 10 ms / workers + 10 ms``.

Every role is its own process (2 workers per stage, ipc). The wall time runs from the
first A item handed out (once every worker is up) to the collector's ``handle_finished``.
The hand-off latency of stage B is the time from an A item's end on its worker to the
start of the B item derived from it on a B worker (one monotonic clock for the machine):
the trip through collector, ACK, ``derive`` and DATA, plus any wait for a free B worker.

    python benchmarks/stages.py                 # 1000 items, 3 runs of each
    python benchmarks/stages.py --items 200 --repeat 1

Target: streaming within 5 % of the ideal.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, ClassVar

from _harness import (
    _FORK,
    BenchmarkError,
    argument_parser,
    percentile,
    print_facts,
    private_endpoints,
    run_processes,
)

import zmqpipeline as zp

DELAY_S = 0.01
WORKERS = 2
A, B = "BENCH_A", "BENCH_B"
for _name in (A, B):
    zp.TaskType.register_type(_name)


def _build(mode: str, n: int, directory: str, started: Any) -> dict[str, Any]:
    """The classes of one run: ``mode`` is ``streaming`` or ``barrier``."""
    ep_a, ep_b = f"ipc://{directory}/a.ipc", f"ipc://{directory}/b.ipc"
    results, acks = f"ipc://{directory}/results.ipc", f"ipc://{directory}/acks.ipc"

    class TaskA(zp.Task):
        task_type = zp.TaskType(A)
        endpoint = zp.EndpointAddress(ep_a)
        n_items = n

        def __init__(self) -> None:
            super().__init__()
            self.handed = 0

        def handle(self, data: dict[str, Any], address: bytes, msgtype: str) -> dict[str, Any]:
            if self.handed == 0:  # the clock starts once every worker is up
                while started.value < len(workers) * WORKERS:
                    time.sleep(0.001)
                time.sleep(0.2)
                stamps["t_first"] = time.monotonic()
            self.handed += 1
            self.is_complete = self.handed >= n
            return {"i": self.handed}

    class TaskB(zp.Task):
        task_type = zp.TaskType(B)
        endpoint = zp.EndpointAddress(ep_b)
        collect_results = True
        sources: ClassVar[list[zp.TaskType]] = [zp.TaskType(A)] if mode == "streaming" else []
        dependencies: ClassVar[list[zp.TaskType]] = [zp.TaskType(A)] if mode == "barrier" else []

        def __init__(self) -> None:
            super().__init__()
            self.handed = 0

        def derive(self, result: dict[str, Any], item_id: str) -> dict[str, Any]:
            return {"i": result["i"], "t_done": result["t_done"]}

        def handle(self, data: dict[str, Any], address: bytes, msgtype: str) -> dict[str, Any]:
            self.handed += 1
            self.is_complete = self.handed >= n
            return {"i": self.handed, "t_done": None}

    def worker_class(task_type: str, endpoint: str) -> type[zp.SingleThreadedWorker]:
        class Sleeper(zp.SingleThreadedWorker):
            def handle_execution(self, data: dict[str, Any], *args: Any, **kw: Any) -> Any:
                t_start = time.monotonic()
                time.sleep(DELAY_S)
                handoff = None if data.get("t_done") is None else t_start - data["t_done"]
                return {"i": data["i"], "t_done": time.monotonic(), "handoff": handoff}

        Sleeper.task_type = zp.TaskType(task_type)
        Sleeper.endpoint = zp.EndpointAddress(endpoint)
        Sleeper.collector_endpoint = zp.EndpointAddress(results)
        return Sleeper

    class Timing(zp.Collector):
        endpoint = zp.EndpointAddress(results)
        ack_endpoint = zp.EndpointAddress(acks)

        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.handoffs: list[float] = []
            self.counts: dict[str, int] = {}
            self.t_finished = 0.0

        def handle_collection(self, data: dict[str, Any], task_type: str, msgtype: str) -> None:
            self.counts[task_type] = self.counts.get(task_type, 0) + 1
            if data.get("handoff") is not None:
                self.handoffs.append(data["handoff"])

        def handle_finished(self, data: dict[str, Any], task_type: str) -> None:
            self.t_finished = time.monotonic()

    stamps: dict[str, float] = {}
    workers = [worker_class(A, ep_a)] + ([] if mode == "one stage" else [worker_class(B, ep_b)])
    return {
        "tasks": [TaskA] if mode == "one stage" else [TaskA, TaskB],
        "workers": workers,
        "collector": Timing,
        "stamps": stamps,
        "binds": [results, acks],
    }


def run_once(mode: str, n: int) -> dict[str, Any]:
    started = _FORK.Value("i", 0)
    with private_endpoints("ipc") as ep:
        assert ep.directory is not None
        parts = _build(mode, n, ep.directory, started)
        collector_cls = parts["collector"]

        def collector() -> dict[str, Any]:
            role = collector_cls()
            role.run()
            return {"t": role.t_finished, "handoffs": role.handoffs, "counts": role.counts}

        def distributor() -> dict[str, Any]:
            report = zp.Distributor(
                collector_cls.endpoint, collector_cls.ack_endpoint, tasks=parts["tasks"]
            ).run()
            return {"t_first": parts["stamps"]["t_first"], "ok": report.ok}

        def worker(cls: type[zp.SingleThreadedWorker]) -> int:
            # A source's workers hold results for 20 ms at most, not RESULT_LINGER_S:
            # the distributor tells them so in WELCOME (the next stage waits for them).
            role = cls()
            with started.get_lock():
                started.value += 1
            role.run()
            return int(role.items_processed)

        roles: list[Any] = [
            ("collector", collector, parts["binds"]),
            ("distributor", distributor, []),
        ]
        for cls in parts["workers"]:
            roles += [("worker", lambda cls=cls: worker(cls), [])] * WORKERS
        out = run_processes(roles, timeout_s=120)
    col, dist = out["collector"][0], out["distributor"][0]
    expected = {A: n} if mode == "one stage" else {A: n, B: n}
    if not dist["ok"] or col["counts"] != expected:
        raise BenchmarkError(f"{mode}: not every item collected: {col['counts']}")
    return {"wall_s": col["t"] - dist["t_first"], "handoffs": col["handoffs"]}


def main() -> None:
    parser = argument_parser(__doc__ or "")
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.items
    print_facts("streaming stages against the dependency barrier")
    ideal = n * DELAY_S / WORKERS + DELAY_S
    print(f"{n} items per stage, {DELAY_S * 1000:.0f} ms each, {WORKERS} workers per stage")
    print(f"ideal of a pipelined chain: {ideal:.3f} s; of the barrier: {2 * ideal:.3f} s")
    print("(one stage: stage A alone, the framework's own floor on this machine)\n")
    rows: dict[str, list[float]] = {"streaming": [], "barrier": [], "one stage": []}
    handoffs: list[float] = []
    for _ in range(args.repeat):
        for mode in rows:
            result = run_once(mode, n)
            rows[mode].append(result["wall_s"])
            if mode == "streaming":
                handoffs += result["handoffs"]
    print("| mode | median wall s | min | max | vs ideal (pipelined) | vs one stage + 1 item |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    floor = statistics.median(rows["one stage"]) + DELAY_S
    for mode, walls in rows.items():
        med = statistics.median(walls)
        print(
            f"| {mode} | {med:.3f} | {min(walls):.3f} | {max(walls):.3f} | "
            f"{(med / ideal - 1) * 100:+.1f} % | {(med / floor - 1) * 100:+.1f} % |"
        )
    med_h, p99_h = percentile(handoffs, 0.5) * 1000, percentile(handoffs, 0.99) * 1000
    print(
        f"\nhand-off A -> B (end of an A item to start of its B item): median {med_h:.1f} ms, "
        f"p99 {p99_h:.1f} ms over {len(handoffs)} items"
    )
    streaming = statistics.median(rows["streaming"])
    met = streaming <= ideal * 1.05
    print(
        f"target (streaming within 5 % of the ideal): {'met' if met else 'NOT met'} "
        f"({(streaming / ideal - 1) * 100:+.1f} %)"
    )


if __name__ == "__main__":
    main()
