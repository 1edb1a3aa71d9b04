"""Crash journals: what the distributor and collector record, how a run resumes, and real
processes SIGKILLed at about half of a run and started again with the same journal."""

from __future__ import annotations

import json
import logging
import os
import signal
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import acks
import pytest
from conftest import FORK
from pipelines import make_task
from test_scheduler import SETTINGS, data_items, sent, task_class

import zmqpipeline
from zmqpipeline import (
    Collector,
    ConfigurationError,
    Distributor,
    EndpointAddress,
    TaskType,
    protocol,
)
from zmqpipeline.collector import CollectorLogic
from zmqpipeline.journal.collector import CollectorJournal
from zmqpipeline.journal import DistributorJournal, run_is_complete
from zmqpipeline.distributor.scheduler import Scheduler
from zmqpipeline.runtime.transport import DropCounter

# -- the distributor's journal, alone ----------------------------------------------------


def test_distributor_journal_keeps_a_watermark_and_the_set_above_it(tmp_path):
    path = tmp_path / "d.sqlite"
    journal = DistributorJournal(path)
    assert journal.load() is None
    journal.begin(7, {"S_A": "A", "S_B": "B"})
    journal.started({"m": 1})
    for seq in range(10):
        journal.handed_out("S_A", seq)
    for seq in (0, 1, 2, 4, 5, 8):
        journal.acked("S_A", seq)
    journal.failed({"task_type": "S_A", "seq": 3, "error": "boom", "data": {"x": b"\x00"}})
    journal.task_finished("S_B")
    journal.close(complete=False)
    rows = _rows(path, "SELECT seq FROM done WHERE task_type = 'S_A' ORDER BY seq")
    assert rows == [8]  # 0-5 folded into the watermark (3 failed for good)

    journal = DistributorJournal(path)
    loaded = journal.load()
    assert loaded is not None
    assert (loaded.run, loaded.tasks, loaded.metadata, loaded.complete) == (
        7,
        {"S_A": "A", "S_B": "B"},
        {"m": 1},
        False,
    )
    done = loaded.done["S_A"]
    assert (done.low, done.above) == (6, {8})
    assert loaded.next_seq["S_A"] == 10 and loaded.collected["S_A"] == 6
    assert loaded.finished == {"S_B"}
    assert [f["seq"] for f in loaded.failed] == [3]
    journal.adopt(loaded)
    journal.acked("S_A", 6)
    journal.acked("S_A", 7)
    journal.close(complete=True)
    assert run_is_complete(path) == 7
    again = DistributorJournal(path)
    loaded = again.load()
    again.close(complete=False)
    assert loaded is not None and loaded.done["S_A"].low == 9 and loaded.complete


def test_journal_commits_in_batches(tmp_path):
    journal = DistributorJournal(tmp_path / "d.sqlite", commit_every_s=0.05)
    journal.begin(1, {"S_A": "A"})
    journal.acked("S_A", 0)
    assert journal.next_commit_at() is not None
    journal.maybe_commit(journal.next_commit_at() - 0.01)  # type: ignore[operator]
    assert journal.next_commit_at() is not None  # not yet due
    journal.maybe_commit(journal.next_commit_at())  # type: ignore[arg-type]
    assert journal.next_commit_at() is None
    journal.close(complete=False)


def test_a_journal_of_the_other_role_is_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    CollectorJournal(path).close()
    with pytest.raises(ConfigurationError, match="collector journal"):
        DistributorJournal(path)


def _rows(path: Path, query: str) -> list[Any]:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return [row[0] for row in db.execute(query)]
    finally:
        db.close()


# -- the scheduler, resumed --------------------------------------------------------------


def _journaled(tmp_path, classes, acked, next_seq, finished=()):
    journal = DistributorJournal(tmp_path / "d.sqlite")
    journal.begin(42, {c.task_type: c.__name__ for c in classes})
    for task_type, seqs in acked.items():
        for seq in seqs:
            journal.acked(task_type, seq)
    for task_type, n in next_seq.items():
        journal.handed_out(task_type, n - 1)
    for task_type in finished:
        journal.task_finished(task_type)
    journal.close(complete=False)
    journal = DistributorJournal(tmp_path / "d.sqlite")
    loaded = journal.load()
    assert loaded is not None
    return journal, loaded


def _resumed(journal, loaded, *classes) -> Scheduler:
    s = Scheduler([cls() for cls in classes], SETTINGS, run=loaded.run)
    journal.adopt(loaded)
    s.journal = journal
    s.resume_from(loaded)
    s.on_collector_hello(b"collector", 0.0)
    return s


def _join(s: Scheduler, wid: bytes, endpoint: str, task_type: str, capacity: int = 100):
    s.on_worker_message(endpoint, wid, protocol.Ready(task_type, capacity, capacity, 1), 0.0)


def test_resumed_task_skips_acked_items_and_hands_out_those_in_flight(tmp_path):
    cls = task_class("S_A", 20)
    journal, loaded = _journaled(tmp_path, [cls], {"S_A": [*range(10), 12]}, {"S_A": 15})
    s = _resumed(journal, loaded, cls)
    s.start({}, 0.0)
    _join(s, b"w1", cls.endpoint, "S_A")
    assert data_items(sent(s)) == [10, 11, *range(13, 20)]
    resume = s.resuming["S_A"]
    assert (resume.skipped, resume.re_handed_out) == (11, 4)
    assert s.tasks["S_A"].collected == 11
    s.on_ack(acks.plain("S_A", [10, 11, *range(13, 20)]), 1.0)
    assert s.done
    journal.close(complete=True)


def _jumping(n: int, jumps: list[int]) -> type:
    """A task of ``n`` items whose ``resume(next_seq)`` jumps ahead, noted in ``jumps``."""

    class Jumping(task_class("S_A", n)):  # type: ignore[misc]
        def resume(self, next_seq):
            jumps.append(next_seq)
            self.count = next_seq

    return Jumping


def test_resume_next_seq_jumps_over_the_watermark(tmp_path):
    jumps: list[int] = []
    Jumping = _jumping(20, jumps)
    journal, loaded = _journaled(tmp_path, [Jumping], {"S_A": [*range(10), 12]}, {"S_A": 13})
    s = _resumed(journal, loaded, Jumping)
    s.start({}, 0.0)
    _join(s, b"w1", Jumping.endpoint, "S_A")
    assert jumps == [10]
    assert data_items(sent(s)) == [10, 11, *range(13, 20)]
    journal.close(complete=False)


def test_a_task_that_is_not_resumable_is_refused_by_name(tmp_path):
    base = task_class("S_A", 20)

    class Fragile(base):  # type: ignore[misc, valid-type]
        resumable = False

    journal, loaded = _journaled(tmp_path, [Fragile], {"S_A": [0]}, {"S_A": 3})
    with pytest.raises(ConfigurationError, match=r"Fragile \(S_A\) is not resumable"):
        _resumed(journal, loaded, Fragile)
    journal.close(complete=False)


def test_finished_task_is_not_run_again_and_its_dependant_starts_at_once(tmp_path):
    first, second = task_class("S_A", 5), task_class("S_B", 3, deps=["S_A"])
    journal, loaded = _journaled(
        tmp_path, [first, second], {"S_A": range(5)}, {"S_A": 5}, finished=["S_A"]
    )
    s = _resumed(journal, loaded, first, second)
    s.start({}, 0.0)
    assert s.tasks["S_A"].finished and s.tasks["S_B"].active
    _join(s, b"wa", first.endpoint, "S_A")
    kinds = [kind for _, _, kind, _ in sent(s)]
    assert (
        protocol.END in kinds and protocol.DATA not in kinds
    )  # the first task's worker is told to stop
    assert s.tasks["S_A"].task.count == 0  # handle() never called
    journal.close(complete=False)


def test_late_ack_of_an_item_from_before_the_crash_is_kept(tmp_path):
    cls = task_class("S_A", 6)
    journal, loaded = _journaled(tmp_path, [cls], {"S_A": [0]}, {"S_A": 4})
    s = _resumed(journal, loaded, cls)
    s.start({}, 0.0)
    # its result reached the collector
    s.on_ack(acks.plain("S_A", [2], b"w-old"), 0.0)
    assert s.stale_acks == 0
    _join(s, b"w1", cls.endpoint, "S_A")
    assert data_items(sent(s)) == [1, 3, 4, 5]
    journal.close(complete=False)


# -- the collector's journal -----------------------------------------------------------------


def _logic(journal):
    handled: list[int] = []

    def collect(task_type, seq, result):
        handled.append(seq)
        return None

    drops = DropCounter(logging.getLogger("t"), "t")
    return CollectorLogic(SETTINGS, collect, drops, journal), handled


def _start(logic, run):
    logic.on_distributor(b"d", protocol.Ping(run), 0.0)
    logic.on_distributor(b"d", protocol.Start(run, {}, ["T"], [], []), 0.0)


def test_restarted_collector_does_not_handle_an_id_twice(tmp_path):
    path = tmp_path / "c.sqlite"
    logic, handled = _logic(CollectorJournal(path))
    _start(logic, 5)
    for seq in (0, 1, 2, 5):
        logic.on_result(protocol.Result(5, "T", b"w", [[seq, {}]]))
    logic.journal.commit()
    logic.journal.close()
    assert handled == [0, 1, 2, 5]

    logic, handled = _logic(CollectorJournal(path))
    logic.on_result(protocol.Result(5, "T", b"w", [[1, {}]]))  # before START: buffered
    _start(logic, 5)
    for seq in (2, 3, 5, 6):
        logic.on_result(protocol.Result(5, "T", b"w", [[seq, {}]]))
    assert handled == [3, 6]
    logic.flush()
    [(_, frames)] = [m for m in logic.outbox if protocol.decode(m[1]).__class__ is protocol.Ack]
    re_acked = acks.entries(protocol.decode(frames).groups)
    assert sorted(e[1] for e in re_acked) == [1, 2, 3, 5, 6]
    logic.journal.close()

    journal = CollectorJournal(path)  # killed before its batch was folded in: none lost
    logic, handled = _logic(journal)
    _start(logic, 5)
    logic.on_result(protocol.Result(5, "T", b"w", [[4, {}]]))
    assert handled == [4]
    os.close(journal._log)
    journal._store.close()
    logic, handled = _logic(CollectorJournal(path))
    _start(logic, 5)
    for seq in range(8):
        logic.on_result(protocol.Result(5, "T", b"w", [[seq, {}]]))
    assert handled == [7]
    logic.journal.close()

    logic, handled = _logic(CollectorJournal(path))
    _start(logic, 6)  # another run: a clean slate
    logic.on_result(protocol.Result(6, "T", b"w", [[1, {}]]))
    assert handled == [1]
    logic.journal.close()


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


def _collector_class(ep: SimpleNamespace, log: Path, marks: dict[int, Any], stall_at: int = 0):
    """Records every id it handles (``task_type i`` lines, flushed). At each count in
    ``marks`` it sets that event; at ``stall_at`` it sets it and then waits, before that
    item's side effect, for the SIGKILL the test sends."""

    class JournaledCollector(Collector):
        count = 0

        def handle_collection(self, data, task_type, msgtype):
            type(self).count += 1
            count = type(self).count
            if count in marks:
                marks[count].set()
                if count == stall_at:
                    FORK.Event().wait(120)  # stopped here until killed
            with open(log, "a") as out:
                out.write(f"{task_type} {data['i']}\n")

        def handle_finished(self, data, task_type):
            with open(ep.results, "w") as out:
                json.dump(data, out)

    JournaledCollector.endpoint = EndpointAddress(ep.collector)
    JournaledCollector.ack_endpoint = EndpointAddress(ep.ack)
    return JournaledCollector


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
            assert _rows(journal, "SELECT count(*) FROM done") == [0]
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
    from test_cli import ROOT
    from test_cli import zmqpipeline as cli

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


def test_a_finished_run_is_not_run_again_and_other_tasks_are_refused(tmp_path, endpoints):
    task = make_task(endpoints.worker, 3)
    path = tmp_path / "d.sqlite"
    journal = DistributorJournal(path)
    journal.begin(99, {"FIRST": task.__name__})
    journal.acked("FIRST", 0)
    journal.task_finished("FIRST")
    journal.close(complete=True)
    report = Distributor(endpoints.collector, endpoints.ack, tasks=[task], journal=path).run()
    assert report.already_complete and report.collected == {"FIRST": 1}

    other = make_task(endpoints.worker, 3, task_type="SECOND")
    journal = DistributorJournal(path)
    journal.begin(100, {"FIRST": task.__name__})
    journal.close(complete=False)
    dist = Distributor(endpoints.collector, endpoints.ack, tasks=[other], journal=path)
    with pytest.raises(ConfigurationError, match="holds run 100 of tasks"):
        dist.run()


def test_an_item_re_driven_before_a_crash_is_neither_lost_nor_shifts_the_others(tmp_path):
    """retry_failed gives a failed item a new seq from the task's own numbering; a resumed
    run replays handle() and must number its items as before, skip the re-driven one if it
    was collected, and no longer report the original as failed."""
    from zmqpipeline.distributor.control import ControlLogic

    cls = task_class("S_A", 6)
    journal = DistributorJournal(tmp_path / "d.sqlite")
    journal.begin(42, {"S_A": cls.__name__})
    s = Scheduler([cls()], SETTINGS, run=42)
    s.journal = journal
    s.on_collector_hello(b"collector", 0.0)
    s.start({}, 0.0)
    _join(s, b"w1", cls.endpoint, "S_A", capacity=1)
    now, handed = 0.0, _payloads(sent(s))
    for _ in range(SETTINGS.max_attempts):  # item 0 raises every time: it fails for good
        s.on_worker_message(cls.endpoint, b"w1", protocol.Fail(0, "ValueError: bad", ["E"]), now)
        s.on_worker_message(cls.endpoint, b"w1", protocol.Credit(1), now)
        now += 3.0
        s.dispatch(now)
        handed |= _payloads(sent(s, now))
    for seq in (1, 2):  # the next two are collected
        assert handed[seq] == {"n": seq + 1, "meta": None}
        s.on_ack(acks.plain("S_A", [seq]), now)
        s.on_worker_message(cls.endpoint, b"w1", protocol.Credit(1), now)
        s.dispatch(now)
        handed |= _payloads(sent(s, now))
    ok, body = ControlLogic(s, "ipc://c.ipc").handle(
        protocol.Control(1, "retry_failed", {"ids": ["S_A/0"]}), now
    )
    assert ok and body["retried"] == [{"item_id": "S_A/0", "new_item_id": "S_A/4"}]
    s.on_ack(acks.plain("S_A", [3]), now)  # seq 3 was handle()'s 4th item
    s.on_worker_message(cls.endpoint, b"w1", protocol.Credit(1), now)
    s.dispatch(now)
    handed |= _payloads(sent(s, now))
    assert handed[4] == {"n": 1, "meta": None}  # the re-driven item
    s.on_ack(acks.plain("S_A", [4]), now)  # collected; then the crash
    s.on_worker_message(cls.endpoint, b"w1", protocol.Credit(1), now)
    s.dispatch(now)
    handed |= _payloads(sent(s, now))
    assert handed[5] == {"n": 5, "meta": None}  # in flight at the crash
    journal, _, s = _crashed_and_resumed(tmp_path, journal, cls)
    again = _payloads(sent(s))
    assert again == {5: {"n": 5, "meta": None}, 6: {"n": 6, "meta": None}}
    assert s.tasks["S_A"].failed == []  # S_A/0 was re-driven as S_A/4 and collected
    assert s.tasks["S_A"].collected == 4
    s.on_ack(acks.plain("S_A", list(again)), 1.0)
    assert s.done and s.tasks["S_A"].collected == 6
    journal.close(complete=True)


def _payloads(messages) -> dict[int, Any]:
    return {
        seq: payload
        for _, _, kind, body in messages
        if kind == protocol.DATA
        for seq, payload in body[1]
    }


def _failed_then_two_collected(tmp_path, cls, data):
    """A journal of S_A: seq 0 failed for good (its data ``data``), 1 and 2 collected."""
    journal = DistributorJournal(tmp_path / "d.sqlite")
    journal.begin(42, {"S_A": cls.__name__})
    failure = {"task_type": "S_A", "seq": 0, "item_id": "S_A/0", "data": data}
    journal.failed(failure)
    for seq in (1, 2):
        journal.handed_out("S_A", seq)
        journal.acked("S_A", seq)
    return journal, failure


def _crashed_and_resumed(tmp_path, journal, cls):
    """Close ``journal`` as a crash leaves it; resume a scheduler of ``cls`` from it, with
    a worker joined."""
    journal.close(complete=False)
    journal = DistributorJournal(tmp_path / "d.sqlite")
    loaded = journal.load()
    assert loaded is not None
    s = _resumed(journal, loaded, cls)
    s.start({}, 0.0)
    _join(s, b"w1", cls.endpoint, "S_A")
    return journal, loaded, s


def test_a_task_that_jumps_ahead_is_told_how_many_items_handle_made_not_the_seq(tmp_path):
    jumps: list[int] = []
    Jumping = _jumping(8, jumps)
    journal, failure = _failed_then_two_collected(tmp_path, Jumping, {"n": 1})
    journal.redriven(failure, 3)  # S_A/0 went out again as seq 3, and was collected
    journal.acked("S_A", 3)
    journal.handed_out("S_A", 4)
    journal.acked("S_A", 4)
    journal, _, s = _crashed_and_resumed(tmp_path, journal, Jumping)
    assert jumps == [4]  # seqs 0-4 are done; handle() made 4 of them (3 was a re-drive)
    assert _payloads(sent(s)) == {
        5: {"n": 5, "meta": None},
        6: {"n": 6, "meta": None},
        7: {"n": 7, "meta": None},
        8: {"n": 8, "meta": None},
    }
    assert s.tasks["S_A"].failed == []
    journal.close(complete=False)


def test_a_re_driven_item_not_collected_before_the_crash_goes_out_again(tmp_path):
    cls = task_class("S_A", 3)
    journal, failure = _failed_then_two_collected(tmp_path, cls, {"n": 1, "x": 0})
    journal.task_finished("S_A")
    journal.redriven(failure, 3)  # reopened, handed out, and then the crash
    journal, loaded, s = _crashed_and_resumed(tmp_path, journal, cls)
    assert "S_A" not in loaded.finished
    assert _payloads(sent(s, 5.0)) == {3: {"n": 1, "x": 0}}  # the re-driven item alone
    assert s.tasks["S_A"].failed == [] and s.resuming["S_A"].re_handed_out == 1
    s.on_ack(acks.plain("S_A", [3]), 6.0)
    assert s.done and s.tasks["S_A"].collected == 3
    assert list(s.latencies) == [1.0]  # handed out at 5, ACKed at 6
    journal.close(complete=True)


def test_a_failure_taken_back_is_gone_from_the_journal_written_or_not(tmp_path):
    journal = DistributorJournal(tmp_path / "d.sqlite")
    journal.begin(42, {"S_A": "A"})
    written = {"task_type": "S_A", "seq": 0, "item_id": "S_A/0", "data": {"x": [1, "a"]}}
    kept = {"task_type": "S_A", "seq": 1, "item_id": "S_A/1", "data": {}}
    buffered = {"task_type": "S_A", "seq": 2, "item_id": "S_A/2", "data": {}}
    journal.failed(written)
    journal.failed(kept)
    journal.commit()
    journal.failed(buffered)
    journal.unfailed(written)  # its result was collected after all
    journal.unfailed(buffered)
    journal.close(complete=False)
    loaded = DistributorJournal(tmp_path / "d.sqlite").load()
    assert loaded is not None
    assert [f["item_id"] for f in loaded.failed] == ["S_A/1"]
    assert loaded.collected["S_A"] == 2 and loaded.done["S_A"].low == 3
