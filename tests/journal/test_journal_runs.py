"""Crash journals with real processes: a distributor, a collector or both SIGKILLed at
about half of a run and started again with the same journal; the CLI's ``--journal``."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from support.journals import collector_class, query_rows
from support.pipelines import make_task
from support.procs import FORK

import zmqpipeline
from zmqpipeline import (
    Collector,
    Distributor,
    EndpointAddress,
    TaskType,
)
from zmqpipeline.journal.run import DistributorJournal

# -- real processes ----------------------------------------------------------------------

N = 2000


def _worker_class(ep: SimpleNamespace, log_dir: Path, task_type: str = "FIRST", endpoint=None):
    class LoggingWorker(zmqpipeline.SingleThreadedWorker):
        """Appends every id it executes to its own file, one line each, flushed."""

        def handle_execution(self, data, *args, **kwargs):
            with open(log_dir / f"executed-{task_type}-{os.getpid()}.log", "a") as out:
                out.write(f"{data['i']}\n")
            if data.get("delay"):
                import time

                time.sleep(data["delay"])  # the item's work
            return {"i": data["i"]}

    LoggingWorker.task_type = TaskType(task_type)
    LoggingWorker.endpoint = EndpointAddress(endpoint or ep.worker)
    LoggingWorker.collector_endpoint = EndpointAddress(ep.collector)
    return LoggingWorker


_collector_class = collector_class


def _run_collector(cls, journal):
    collector = cls()
    collector.journal = journal
    collector.run()


def _run_distributor(ep, tasks, journal):
    report = Distributor(ep.collector, ep.ack, tasks=tasks, journal=journal).run()
    with open(ep.report, "w") as out:
        json.dump(asdict(report), out)


def _acked_in(journal_path: Path) -> dict[str, set[int]]:
    """The ids (``i`` = seq + 1) the distributor's journal had committed as ACKed."""
    journal = DistributorJournal(journal_path)
    try:
        loaded = journal.load()
    finally:
        journal.close(complete=False)
    assert loaded is not None
    return {
        tt: {seq + 1 for seq in range(done.low)} | {seq + 1 for seq in done.above}
        for tt, done in loaded.done.items()
    }


def _executed(log_dir: Path, task_type: str = "FIRST") -> Counter[int]:
    counts: Counter[int] = Counter()
    for path in log_dir.glob(f"executed-{task_type}-*.log"):
        counts.update(int(line) for line in path.read_text().split())
    return counts


def _handled(log: Path) -> Counter[tuple[str, int]]:
    return Counter(
        (tt, int(i)) for tt, i in (line.split() for line in log.read_text().splitlines())
    )


class _Setup:
    def __init__(self, procs, ep, tmp_path, n=N, delay=0.001):
        self.procs, self.ep = procs, ep
        self.dist_journal = tmp_path / "journals" / "distributor.sqlite"
        self.coll_journal = tmp_path / "journals" / "collector.sqlite"
        self.handled_log = tmp_path / "handled.log"
        self.log_dir = tmp_path
        self.task = make_task(ep.worker, n, delay=delay)
        self.worker = _worker_class(ep, tmp_path)
        self.n = n

    def start_collector(self, name, marks, stall_at=0):
        cls = _collector_class(self.ep, self.handled_log, marks, stall_at)
        self.procs.start(name, lambda: _run_collector(cls, self.coll_journal))

    def start_distributor(self, name, tasks=None):
        tasks = tasks or [self.task]
        self.procs.start(name, lambda: _run_distributor(self.ep, tasks, self.dist_journal))

    def kill(self, name):
        self.procs.kill(name, signal.SIGKILL)
        self.procs.started[name].join(10)
        assert self.procs.started[name].exitcode == -signal.SIGKILL

    def check(self, acked_before: set[int], task_type="FIRST", n=None):
        n = n or self.n
        handled = _handled(self.handled_log)
        ids = [i for tt, i in handled if tt == task_type]
        assert sorted(ids) == list(range(1, n + 1)), "not every id collected"
        twice = {key: c for key, c in handled.items() if c > 1}
        assert not twice, f"handled more than once: {sorted(twice)[:20]}"
        executed = _executed(self.log_dir, task_type)
        again = sorted(i for i in acked_before if executed[i] > 1)
        assert not again, f"ACKed before the crash, executed again: {again[:20]}"
        for journal in (self.dist_journal, self.coll_journal):  # all under the watermarks
            assert query_rows(journal, "SELECT count(*) FROM done") == [0]
        return sum(1 for c in executed.values() if c > 1)


ROUNDS = [0, 1, 2]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("round_", ROUNDS)
def test_killed_distributor_resumes_where_it_stopped(procs, endpoints, transport, tmp_path, round_):
    halfway = FORK.Event()
    run = _Setup(procs, endpoints, tmp_path)
    run.start_collector("collector", {N // 2: halfway})
    procs.start("worker0", lambda: run.worker().run())
    procs.start("worker1", lambda: run.worker().run())
    run.start_distributor("doomed")
    assert halfway.wait(60)
    run.kill("doomed")
    acked = _acked_in(run.dist_journal)["FIRST"]
    assert N // 4 < len(acked) < N
    run.start_distributor("distributor")
    codes = procs.join(60)
    assert codes == {"collector": 0, "worker0": 0, "worker1": 0, "doomed": -9, "distributor": 0}
    again = run.check(acked)
    report = json.loads(endpoints.report.read_text())
    assert report["collected"] == {"FIRST": N} and report["failed"] == [] and not report["aborted"]
    resumed = report["resumed"]
    assert resumed["skipped"]["FIRST"] >= len(acked)
    print(
        f"{transport}: {len(acked)} ACKed in the journal at the kill, "
        f"skipped {resumed['skipped']['FIRST']}, re-handed out "
        f"{resumed['re_handed_out']['FIRST']}, executed twice {again}"
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("round_", ROUNDS)
def test_killed_collector_handles_no_id_twice(procs, endpoints, transport, tmp_path, round_):
    halfway = FORK.Event()
    run = _Setup(procs, endpoints, tmp_path)
    run.start_collector("doomed", {N // 2: halfway}, stall_at=N // 2)
    procs.start("worker0", lambda: run.worker().run())
    procs.start("worker1", lambda: run.worker().run())
    run.start_distributor("distributor")
    assert halfway.wait(60)
    run.kill("doomed")
    assert len(_handled(run.handled_log)) == N // 2 - 1
    run.start_collector("collector", {})
    codes = procs.join(60)
    assert codes == {"doomed": -9, "worker0": 0, "worker1": 0, "distributor": 0, "collector": 0}
    run.check(set())
    report = json.loads(endpoints.report.read_text())
    assert report["collected"] == {"FIRST": N} and report["failed"] == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("round_", [0, 1])
def test_collector_killed_anywhere_handles_at_most_one_id_twice(
    procs, endpoints, transport, tmp_path, round_
):
    """Killed wherever it happens to be: only an id whose side effect was done and whose
    journal write was not may be handled again (the documented window of one item)."""
    halfway = FORK.Event()
    run = _Setup(procs, endpoints, tmp_path)
    run.start_collector("doomed", {N // 2: halfway})
    procs.start("worker0", lambda: run.worker().run())
    procs.start("worker1", lambda: run.worker().run())
    run.start_distributor("distributor")
    assert halfway.wait(60)
    run.kill("doomed")
    run.start_collector("collector", {})
    codes = procs.join(60)
    assert codes == {"doomed": -9, "worker0": 0, "worker1": 0, "distributor": 0, "collector": 0}
    handled = _handled(run.handled_log)
    assert sorted(i for _, i in handled) == list(range(1, N + 1))
    twice = [key for key, count in handled.items() if count > 1]
    assert len(twice) <= 1 and all(count <= 2 for count in handled.values()), twice


@pytest.mark.timeout(120)
@pytest.mark.parametrize("round_", ROUNDS)
def test_killed_distributor_and_collector_resume(procs, endpoints, transport, tmp_path, round_):
    halfway = FORK.Event()
    run = _Setup(procs, endpoints, tmp_path)
    run.start_collector("doomed_c", {N // 2: halfway}, stall_at=N // 2)
    procs.start("worker0", lambda: run.worker().run())
    procs.start("worker1", lambda: run.worker().run())
    run.start_distributor("doomed_d")
    assert halfway.wait(60)
    run.kill("doomed_d")
    run.kill("doomed_c")
    acked = _acked_in(run.dist_journal)["FIRST"]
    run.start_distributor("distributor")
    run.start_collector("collector", {})
    codes = procs.join(60)
    assert codes == {
        "doomed_c": -9,
        "doomed_d": -9,
        "worker0": 0,
        "worker1": 0,
        "distributor": 0,
        "collector": 0,
    }
    run.check(acked)
    report = json.loads(endpoints.report.read_text())
    assert report["collected"] == {"FIRST": N} and report["resumed"]["run"]


@pytest.mark.timeout(120)
def test_killed_while_the_second_task_runs_the_first_is_not_run_again(
    procs, endpoints, transport, tmp_path
):
    n1, n2 = 300, 600
    second_half = FORK.Event()
    run = _Setup(procs, endpoints, tmp_path, n=n1)
    first = run.task
    second = make_task(
        endpoints.worker2, n2, task_type="SECOND", dependencies=["FIRST"], delay=0.002
    )
    for k in range(2):
        procs.start(f"first{k}", lambda: run.worker().run())
    second_worker = _worker_class(endpoints, tmp_path, "SECOND", endpoints.worker2)
    for k in range(2):
        procs.start(f"second{k}", lambda: second_worker().run())
    run.start_collector("collector", {n1 + n2 // 2: second_half})
    run.start_distributor("doomed", [first, second])
    assert second_half.wait(60)
    run.kill("doomed")
    executed_first = _executed(tmp_path, "FIRST")
    run.start_distributor("distributor", [first, second])
    codes = procs.join(60)
    assert set(codes.values()) == {0, -9}, codes
    assert _executed(tmp_path, "FIRST") == executed_first  # nothing of FIRST ran again
    run.check(_acked_in_safe(run), "FIRST", n1)
    handled = _handled(run.handled_log)
    assert sorted(i for tt, i in handled if tt == "SECOND") == list(range(1, n2 + 1))
    report = json.loads(endpoints.report.read_text())
    assert report["resumed"]["tasks_already_finished"] == ["FIRST"]
    assert report["collected"] == {"FIRST": n1, "SECOND": n2}


def _acked_in_safe(run: _Setup) -> set[int]:
    return set(range(1, run.n + 1))


@pytest.mark.timeout(60)
def test_workers_ask_for_work_again_once_a_slow_collector_drains(procs, endpoints):
    """A collector slower than the workers (as a journal makes it) backs results up in the
    workers, which then hold their credit back; once it drains they must ask again (they
    used to wait for ever, idle, with every item ACKed)."""
    n = 20_000
    task = make_task(endpoints.worker, n)

    class EmptyWorker(zmqpipeline.SingleThreadedWorker):
        task_type = TaskType("FIRST")
        endpoint = EndpointAddress(endpoints.worker)
        collector_endpoint = EndpointAddress(endpoints.collector)

        def handle_execution(self, data, *args, **kwargs):
            return None

    class SlowCollector(Collector):
        endpoint = EndpointAddress(endpoints.collector)
        ack_endpoint = EndpointAddress(endpoints.ack)

        def handle_collection(self, data, task_type, msgtype):
            import time

            until = time.perf_counter() + 0.00005  # 50 us of work per result
            while time.perf_counter() < until:
                pass

    procs.start("collector", lambda: SlowCollector().run())
    procs.start("worker0", lambda: EmptyWorker().run())
    procs.start("worker1", lambda: EmptyWorker().run())
    procs.start("distributor", lambda: _run_distributor(endpoints, [task], None))
    assert procs.join(50) == {"collector": 0, "worker0": 0, "worker1": 0, "distributor": 0}
    assert json.loads(endpoints.report.read_text())["collected"] == {"FIRST": n}


@pytest.mark.timeout(120)
def test_cli_run_with_a_journal_of_a_finished_run_says_so_and_fresh_starts_anew(tmp_path):
    from support.cli import zmqpipeline as cli
    from support.paths import ROOT

    example, journals = str(ROOT / "examples" / "singlethread"), str(tmp_path / "journals")
    first = cli("run", example, "--journal", journals, "--quiet")
    assert first.returncode == 0, first.stdout + first.stderr
    again = cli("run", example, "--journal", journals, "--quiet")
    assert again.returncode == 0
    [line] = again.stdout.splitlines()
    assert "is already complete" in line and "--fresh" in line
    fresh = cli("run", example, "--journal", journals, "--quiet", "--fresh")
    assert fresh.returncode == 0 and "all 100 items collected" in fresh.stdout
    assert sorted(os.listdir(journals)) == ["collector.sqlite", "distributor.sqlite"]


def test_journal_dir_setting_names_a_file_per_role(tmp_path, monkeypatch, endpoints):
    monkeypatch.setenv("ZMQPIPELINE_JOURNAL_DIR", str(tmp_path / "j"))
    task = make_task(endpoints.worker, 3)
    dist = Distributor(endpoints.collector, endpoints.ack, tasks=[task])
    assert dist.journal == str(tmp_path / "j" / "distributor.sqlite")
    collector = _collector_class(endpoints, tmp_path / "h.log", {})()
    assert collector.journal == str(tmp_path / "j" / "collector.sqlite")
    explicit = Distributor(endpoints.collector, endpoints.ack, tasks=[task], journal="x.sqlite")
    assert explicit.journal == "x.sqlite"
