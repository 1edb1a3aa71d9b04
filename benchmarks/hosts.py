"""Across hosts: workers on many network namespaces over tcp with CURVE, and a far-away host.

Each host is a Linux network namespace joined to the others by a veth pair and a bridge
(``tests/support/netbed.py``); every role is a real process started inside its host
(``benchmarks/_hosts_roles.py``), all over tcp with CURVE and ZAP (fresh keys, given through
the ``ZMQPIPELINE_CURVE_*`` variables). Host 0 runs the distributor and the collector; the
others run single-threaded workers. Three scenarios:

* **scale**: 8 hosts x 8 workers, 10 ms items (sleep). Ramp-up: from the first worker
  process started (and from the first item handed out) to the first item run by the last of
  the 64 workers. Throughput over the steady window (every worker working -> last item handed
  out; items started and ended in it) against the ideal of workers / 10 ms, and over the whole
  run (first item handed out -> last ended). The distributor's CPU: utime + stime of its
  process (every thread), first -> last item handed out, over that wall time (100 % = a core).
* **far, 100 ms items**: fast hosts and one slow host whose workers reach host 0 only through
  a user-space TCP relay in their namespace that holds every byte back 50 ms each way (a
  100 ms round trip). Each host's rate of items in the steady window; the slow host's share
  against the mean of the fast hosts'.
* **far, 10 ms items**: the fast hosts alone, then the same with the slow host (through the
  relay) taking items too; the fast hosts' items/s in both, and what they lost.

Root only (network namespaces); elsewhere it says so and exits 0. Every namespace it makes
and every process it starts (ended by PID) goes when it ends, also on Ctrl-C or SIGTERM.
No ``tc netem``: the delay is the relay's. The machine's cores are shared by every process
of every host, so the figures are a floor of what separate machines would give.

    sudo python benchmarks/hosts.py --quick      # 2 hosts x 2 workers, 1 fast + 1 slow host
    sudo python benchmarks/hosts.py              # 8 x 8; 3 fast hosts x 4 + 1 slow host x 4
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import zmq
from support.netbed import NetBed, available

import zmqpipeline as zp
from zmqpipeline.security import local_key_env

__all__ = ["Scenario", "main", "run_scenario"]

ROLES = Path(__file__).resolve().parent / "_hosts_roles.py"
WORK, RESULTS, ACKS = 5601, 5602, 5603
RELAY_WORK, RELAY_RESULTS = 6601, 6602
RELAY_DELAY_S = 0.05
RUN_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Scenario:
    """``hosts`` worker hosts (the last one slow if ``slow``) x ``workers`` each."""

    name: str
    hosts: int
    workers: int
    delay: float
    seconds: float
    slow: bool = False

    @property
    def n_items(self) -> int:
        return int(self.hosts * self.workers * self.seconds / self.delay)


def _start(host: Any, role: str, config: Path, env: dict[str, str], **kw: Any) -> Any:
    argv = [sys.executable, str(ROLES), role, str(config)]
    return host.popen(argv, env={**os.environ, **env}, **kw)


def _wait(process: Any, what: str, timeout: float) -> None:
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{what} (pid {process.pid}) did not finish in {timeout:.0f} s") from None
    if code != 0:
        raise SystemExit(f"{what} (pid {process.pid}) exited with {code}")


def _wait_listening(pid: int, ports: tuple[int, ...], timeout: float = 30.0) -> None:
    """Return once ``ports`` listen in the namespace of process ``pid`` (its /proc net/tcp)."""
    wanted = {f"{port:04X}" for port in ports}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/net/tcp") as table:
            rows = [line.split() for line in table.readlines()[1:]]
        if wanted <= {row[1].rsplit(":", 1)[1] for row in rows if row[3] == "0A"}:
            return
        time.sleep(0.05)
    raise SystemExit(f"ports {ports} were not listening after {timeout:.0f} s")


def _start_relay(host: Any, target: str, config: Path) -> None:
    env = {
        "HOSTS_RELAY": f"{RELAY_WORK}={target}:{WORK},{RELAY_RESULTS}={target}:{RESULTS}",
        "HOSTS_RELAY_DELAY_S": str(RELAY_DELAY_S),
    }
    relay = _start(host, "relay", config, env, stdout=subprocess.PIPE, text=True)
    if relay.stdout.readline().strip() != "READY":
        raise SystemExit(f"the relay (pid {relay.pid}) did not start")


class CpuSampler:
    """Samples the machine's /proc/stat (busy and total jiffies) every 0.25 s on a thread."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            with open("/proc/stat") as stat:
                fields = [int(x) for x in stat.readline().split()[1:]]
            idle = fields[3] + fields[4]  # idle + iowait
            self.samples.append((time.monotonic(), sum(fields) - idle, sum(fields)))
            if self._stop.wait(0.25):
                return

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def busy(self, start: float, end: float) -> float:
        """Share of every core busy between ``start`` and ``end`` (nearest samples inside)."""
        inside = [s for s in self.samples if start <= s[0] <= end] or self.samples
        (_, busy0, total0), (_, busy1, total1) = inside[0], inside[-1]
        return (busy1 - busy0) / max(1, total1 - total0)


def run_scenario(scenario: Scenario, directory: Path) -> dict[str, Any]:
    """One run of ``scenario`` on a fresh bed; the collector's rows and the distributor's stamps."""
    server_env, client_env = local_key_env(directory / "keys")
    bed = NetBed(1 + scenario.hosts)
    try:
        home = bed.hosts[0]
        config = directory / "config.json"
        config.write_text(
            json.dumps(
                {
                    "work": f"tcp://{home.addr}:{WORK}",
                    "results": f"tcp://{home.addr}:{RESULTS}",
                    "acks": f"tcp://{home.addr}:{ACKS}",
                    "n": scenario.n_items,
                    "delay": scenario.delay,
                    "results_file": str(directory / "results.json"),
                    "report_file": str(directory / "report.json"),
                }
            )
        )
        collector = _start(home, "collector", config, server_env)
        distributor = _start(home, "distributor", config, server_env)
        _wait_listening(distributor.pid, (WORK, RESULTS, ACKS))
        launched = time.monotonic()
        for index, host in enumerate(bed.hosts[1:], start=1):
            slow = scenario.slow and index == scenario.hosts
            if slow:
                _start_relay(host, home.addr, config)
            via = "127.0.0.1" if slow else home.addr
            env = {
                **client_env,
                "HOSTS_HOST": str(index),
                "HOSTS_WORK": f"tcp://{via}:{RELAY_WORK if slow else WORK}",
                "HOSTS_RESULTS": f"tcp://{via}:{RELAY_RESULTS if slow else RESULTS}",
            }
            for _ in range(scenario.workers):
                _start(host, "worker", config, env)
        with CpuSampler() as sampler:
            _wait(distributor, "the distributor", RUN_TIMEOUT_S)
        _wait(collector, "the collector", 30)
        results = json.loads((directory / "results.json").read_text())
        report = json.loads((directory / "report.json").read_text())
    finally:
        bed.close()
    return {"launched_s": launched, "sampler": sampler, **results, **report}


def analyse(scenario: Scenario, run: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run (see the module's docstring)."""
    rows = run["rows"]
    if len(rows) != scenario.n_items:
        raise SystemExit(f"{scenario.name}: collected {len(rows)} of {scenario.n_items} items")
    first_by_pid: dict[int, float] = {}
    for _host, pid, started, _ended in rows:
        first_by_pid[pid] = min(started, first_by_pid.get(pid, started))
    expected = scenario.hosts * scenario.workers
    if len(first_by_pid) != expected:
        raise SystemExit(f"{scenario.name}: {len(first_by_pid)} of {expected} workers ran items")
    all_working = max(first_by_pid.values())
    window_end = run["last_s"]
    window = window_end - all_working
    steady = [row for row in rows if row[2] >= all_working and row[3] <= window_end]
    per_host: dict[int, float] = {h: 0.0 for h in range(1, scenario.hosts + 1)}
    for host, *_ in steady:
        per_host[host] += 1 / window
    last_end = max(row[3] for row in rows)
    by_pid: dict[int, list[tuple[float, float]]] = {}
    for _host, pid, started, ended in sorted(steady, key=lambda row: row[2]):
        by_pid.setdefault(pid, []).append((started, ended))
    gaps = [b[0] - a[1] for runs in by_pid.values() for a, b in itertools.pairwise(runs)]
    oversleep = sum(e - s for s, e in (row[2:4] for row in steady)) / len(steady) - scenario.delay
    ideal = expected / scenario.delay
    cpu = run["last_cpu_s"] - run["first_cpu_s"]
    return {
        "items": len(rows),
        "ramp_from_launch_s": all_working - run["launched_s"],
        "ramp_from_first_item_s": all_working - run["first_s"],
        "window_s": window,
        "steady_per_s": len(steady) / window,
        "whole_per_s": len(rows) / (last_end - run["first_s"]),
        "ideal_per_s": ideal,
        "per_host_per_s": per_host,
        "distributor_cpu": cpu / (run["last_s"] - run["first_s"]),
        "machine_busy": run["sampler"].busy(all_working, window_end),
        "oversleep_ms": oversleep * 1000,
        "gap_ms": sum(gaps) / max(1, len(gaps)) * 1000,
    }


def _measure(scenario: Scenario) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="zmqpipeline-hosts-"))
    try:
        return analyse(scenario, run_scenario(scenario, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def report_scale(scenario: Scenario) -> dict[str, Any]:
    """Print and return the scale scenario's figures."""
    f = _measure(scenario)
    print(
        f"scale: {scenario.hosts} hosts x {scenario.workers} workers, {f['items']} items of "
        f"{scenario.delay * 1000:.0f} ms, tcp + CURVE"
    )
    print(
        f"  all {scenario.hosts * scenario.workers} working: {f['ramp_from_launch_s']:.2f} s "
        f"after the first worker process started, {f['ramp_from_first_item_s']:.2f} s after "
        "the first item went out"
    )
    print(
        f"  steady ({f['window_s']:.1f} s): {f['steady_per_s']:,.0f} items/s of "
        f"{f['ideal_per_s']:,.0f} ideal = {f['steady_per_s'] / f['ideal_per_s'] * 100:.1f} %; "
        f"whole run {f['whole_per_s']:,.0f} items/s = "
        f"{f['whole_per_s'] / f['ideal_per_s'] * 100:.1f} %"
    )
    print(f"  distributor CPU while handing out: {f['distributor_cpu'] * 100:.0f} % of a core")
    print(
        f"  steady: machine {f['machine_busy'] * 100:.0f} % busy (every core); a worker's item "
        f"took {f['oversleep_ms']:.2f} ms more than its sleep, and it waited "
        f"{f['gap_ms']:.2f} ms between items"
    )
    verdict = "met" if f["steady_per_s"] >= 0.9 * f["ideal_per_s"] else "MISSED"
    print(f"  target >= 90 % of ideal (steady): {verdict}", flush=True)
    return f


def report_far(long_items: Scenario, fast_only: Scenario, with_slow: Scenario) -> dict[str, Any]:
    """Print and return the far host's figures: its share, and what fast hosts lose to it."""
    f = _measure(long_items)
    slow = long_items.hosts
    fast = [rate for host, rate in f["per_host_per_s"].items() if host != slow]
    share = f["per_host_per_s"][slow] / (sum(fast) / len(fast))
    print(
        f"far host (relay, {RELAY_DELAY_S * 1000:.0f} ms each way): {long_items.hosts - 1} fast "
        f"+ 1 slow host x {long_items.workers} workers, {long_items.delay * 1000:.0f} ms items"
    )
    rates = ", ".join(f"{rate:.1f}" for rate in fast)
    print(f"  items/s per fast host: {rates}; slow host: {f['per_host_per_s'][slow]:.1f}")
    print(
        f"  slow / fast share: {share * 100:.1f} % (target >= 80 %: "
        f"{'met' if share >= 0.8 else 'MISSED'})"
    )
    alone = _measure(fast_only)
    beside = _measure(with_slow)
    alone_rate = sum(alone["per_host_per_s"].values())
    beside_rate = sum(r for h, r in beside["per_host_per_s"].items() if h != with_slow.hosts)
    loss = 1 - beside_rate / alone_rate
    print(
        f"  {fast_only.delay * 1000:.0f} ms items, fast hosts' items/s: {alone_rate:,.0f} alone "
        f"({alone_rate / alone['ideal_per_s'] * 100:.1f} % of ideal), {beside_rate:,.0f} beside "
        f"the slow host (which did {beside['per_host_per_s'][with_slow.hosts]:,.0f}/s)"
    )
    print(
        f"  lost to the slow host: {loss * 100:.1f} % (target <= 10 %: "
        f"{'met' if loss <= 0.1 else 'MISSED'})",
        flush=True,
    )
    return {"long": f, "share": share, "alone": alone, "beside": beside, "loss": loss}


def scenarios(quick: bool) -> tuple[Scenario, Scenario, Scenario, Scenario]:
    """scale, far (long items), fast hosts alone and beside the slow one (short items)."""
    if quick:
        hosts, workers, fast, fast_workers, seconds = 2, 2, 1, 2, 2.0
    else:
        hosts, workers, fast, fast_workers, seconds = 8, 8, 3, 4, 5.0
    return (
        Scenario("scale", hosts, workers, 0.01, seconds),
        Scenario("far-long", fast + 1, fast_workers, 0.1, seconds * 2, slow=True),
        Scenario("fast-alone", fast, fast_workers, 0.01, seconds),
        Scenario("fast-beside-slow", fast + 1, fast_workers, 0.01, seconds, slow=True),
    )


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 x 2 workers, short runs")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args()
    reason = available()
    if reason:
        print(f"benchmarks/hosts.py skipped: {reason}")
        return
    signal.signal(signal.SIGTERM, _interrupted)
    print(
        f"zmqpipeline {zp.__version__}, pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPU(s), {platform.machine()}"
    )
    scale, far, alone, beside = scenarios(args.quick)
    try:
        figures = {"scale": report_scale(scale), "far": report_far(far, alone, beside)}
    except KeyboardInterrupt:  # the bed of the run under way is already gone (finally)
        print("interrupted: its namespaces and processes are gone", file=sys.stderr)
        raise SystemExit(130) from None
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
