"""Recurring jobs against pushed items: what a schedule costs the distributor.

``scheduled``: a ScheduledTask with 10 000 jobs on ``CONTINUE`` (each due again as soon
as its previous run has ended) and empty work. ``pushed``: an open-ended task, and a
client pushing the same number of empty items with ``Pusher.push_many``, again and again
(each round of 10 000 once the previous is accepted). Both run for ``--seconds`` on 2
workers over ipc, then are drained through the control endpoint. Reported: runs (items)
collected per second over the window, the distributor's CPU seconds per 1000 runs and
its peak RSS. Every role is its own process; the modes run alternately ``--repeat``
times on the same machine.

    python benchmarks/schedule.py                # 10 000 jobs, 8 s, 2 rounds
    python benchmarks/schedule.py --jobs 1000 --seconds 3 --repeat 1
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from _harness import (
    BenchmarkError,
    argument_parser,
    print_facts,
    private_endpoints,
    proc_cpu_s,
    proc_peak_rss_mib,
    run_processes,
    wait_bound,
)

import zmqpipeline as zp

KIND = "BENCH_JOBS"
zp.TaskType.register_type(KIND)
WORKERS = 2


def run_once(mode: str, jobs: int, seconds: float) -> dict[str, Any]:
    with private_endpoints("ipc") as ep:
        d = ep.directory
        work, results, acks = f"ipc://{d}/w.ipc", f"ipc://{d}/r.ipc", f"ipc://{d}/a.ipc"
        control, push = f"ipc://{d}/control.ipc", f"ipc://{d}/push.ipc"

        if mode == "scheduled":

            class Task(zp.ScheduledTask):
                task_type = zp.TaskType(KIND)
                endpoint = zp.EndpointAddress(work)
                schedule = zp.Schedule(jobs={f"job{i}": "CONTINUE" for i in range(jobs)})

        else:

            class Task(zp.Task):  # type: ignore[no-redef]
                task_type = zp.TaskType(KIND)
                endpoint = zp.EndpointAddress(work)
                open_ended = True

        class Counting(zp.Collector):
            endpoint = zp.EndpointAddress(results)
            ack_endpoint = zp.EndpointAddress(acks)

            def __init__(self) -> None:
                super().__init__()
                self.n, self.first, self.last = 0, 0.0, 0.0

            def handle_collection(self, data: Any, task_type: str, msgtype: str) -> None:
                self.last = time.monotonic()
                if not self.n:
                    self.first = self.last
                self.n += 1

        class Empty(zp.SingleThreadedWorker):
            task_type = zp.TaskType(KIND)
            endpoint = zp.EndpointAddress(work)
            collector_endpoint = zp.EndpointAddress(results)

            def handle_execution(self, data: Any, *args: Any, **kwargs: Any) -> None:
                return None

        def collector() -> dict[str, Any]:
            role = Counting()
            role.run()
            return {"n": role.n, "window_s": role.last - role.first}

        def distributor() -> dict[str, Any]:
            dist = zp.Distributor(
                results, acks, tasks=[Task], control_endpoint=control, push_endpoint=push
            )
            dist.run()
            return {"cpu_s": proc_cpu_s(), "rss_mib": proc_peak_rss_mib()}

        def pusher() -> int:
            wait_bound(push)
            client, batch, sent = zp.Pusher(push), [{} for _ in range(jobs)], 0
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    sent += client.push_many(KIND, batch)
                except zp.PushError:  # the drain began: no more pushes
                    break
            return sent

        def drain() -> None:
            wait_bound(control)
            time.sleep(seconds)  # the measured window
            zp.Control(control, timeout=10).drain()

        roles: list[Any] = [
            ("collector", collector, [results, acks]),
            ("distributor", distributor, []),
        ]
        roles += [("worker", lambda: Empty().run(), [])] * WORKERS
        if mode == "pushed":
            roles.append(("pusher", pusher, []))
        drainer = threading.Thread(target=drain)
        drainer.start()
        try:
            out = run_processes(roles, timeout_s=seconds + 60)
        finally:
            drainer.join()
    col, dist = out["collector"][0], out["distributor"][0]
    if not col["n"]:
        raise BenchmarkError(f"{mode}: nothing collected")
    return {
        "rate": col["n"] / col["window_s"],
        "n": col["n"],
        "cpu_per_1000": 1000 * dist["cpu_s"] / col["n"],
        "rss_mib": dist["rss_mib"],
    }


def main() -> None:
    parser = argument_parser(__doc__ or "")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print_facts("recurring jobs against pushed items")
    print(f"{args.jobs} jobs on CONTINUE (or items pushed in rounds of {args.jobs}), empty work,")
    print(f"{WORKERS} workers, {args.seconds:g} s each, ipc; modes run alternately\n")
    rows: dict[str, list[dict[str, Any]]] = {"scheduled": [], "pushed": []}
    for _ in range(args.repeat):
        for mode in rows:
            rows[mode].append(run_once(mode, args.jobs, args.seconds))
    print(
        "| mode | runs/s (median) | runs | distributor CPU s / 1000 runs | distributor peak RSS |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for mode, results in rows.items():
        rate = statistics.median(r["rate"] for r in results)
        runs = statistics.median(r["n"] for r in results)
        cpu = statistics.median(r["cpu_per_1000"] for r in results)
        rss = max(r["rss_mib"] for r in results)
        print(
            f"| {mode} | {rate:,.0f} | {runs:,.0f} | {cpu:.3f} | {rss:.0f} MiB |".replace(",", " ")
        )


if __name__ == "__main__":
    main()
