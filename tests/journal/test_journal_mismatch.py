"""Journals that do not match the run (issue 28): a distributor journal lost while the
collector's still holds the run is never a silent start-over; a journal written for
another definition of the tasks is refused unless ``fresh``. Real processes."""

from __future__ import annotations

import signal

import pytest
from edges_helpers import collector_class, handled, load, run_collector, run_distributor
from edges_helpers import worker_class as echo_worker
from support.pipelines import make_task
from support.procs import FORK

from zmqpipeline import Distributor, JournalError
from zmqpipeline.journal import DistributorJournal

N = 1000


def _killed_half_way(procs, ep, tmp_path, n=N, names=("doomed-d", "doomed-c")):
    journals = tmp_path / "journals"
    dist_journal, coll_journal = journals / "distributor.sqlite", journals / "collector.sqlite"
    log = tmp_path / "handled.log"
    task = make_task(ep.worker, n, "FIRST")
    worker = echo_worker(ep.worker, ep.collector, "FIRST")
    halfway = FORK.Event()
    doomed = collector_class(ep, log, {n // 2: halfway}, stall_at=n // 2)
    procs.start("doomed-c", lambda: run_collector(doomed, coll_journal))
    procs.start("worker", lambda: worker().run())
    procs.start("doomed-d", lambda: run_distributor(ep, [task], dist_journal))
    assert halfway.wait(30)
    for name in names:
        procs.kill(name, signal.SIGKILL)
        procs.started[name].join(10)
    return dist_journal, coll_journal, log, task


@pytest.mark.timeout(60)
def test_a_lost_distributor_journal_is_refused_by_the_collector_not_a_silent_start_over(
    procs, endpoints, tmp_path
):
    ep = endpoints
    dist_journal, coll_journal, log, task = _killed_half_way(procs, ep, tmp_path)
    before = handled(log)
    dist_journal.unlink()  # lost (a truncated file reads as empty: the same)
    for extra in ("-wal", "-shm"):
        (dist_journal.parent / (dist_journal.name + extra)).unlink(missing_ok=True)
    error = tmp_path / "collector.err"
    procs.start("collector", lambda: run_collector(collector_class(ep, log), coll_journal, error))
    procs.start("distributor", lambda: run_distributor(ep, [task], dist_journal))
    procs.started["collector"].join(30)
    assert procs.started["collector"].exitcode == 3
    text = error.read_text().splitlines()[0]
    assert text.startswith(f"JournalError: journal {coll_journal} follows run "), text
    assert "which has not ended, but the distributor started run" in text
    assert "fresh" in text
    procs.kill("distributor", signal.SIGTERM)  # it waits for a collector: end it
    procs.kill("worker", signal.SIGTERM)
    procs.join(10)
    assert handled(log) == before  # nothing handled a second time


@pytest.mark.timeout(60)
def test_a_journal_of_another_task_definition_is_refused_naming_what_changed(
    procs, endpoints, tmp_path
):
    ep = endpoints
    dist_journal, _, _, _ = _killed_half_way(procs, ep, tmp_path, n=4000)
    smaller = make_task(ep.worker, 1000, "FIRST")
    smaller.n_items = 1000  # declared
    with pytest.raises(JournalError) as refused:
        Distributor(ep.collector, ep.ack, tasks=[smaller], journal=dist_journal).run()
    text = str(refused.value)
    assert f"journal {dist_journal} holds run" in text
    assert "task FIRST: size None -> 1000" in text and "fresh=True (--fresh)" in text
    journal = DistributorJournal(dist_journal)  # left as it was
    loaded = journal.load()
    journal.close(complete=False)
    assert loaded is not None and not loaded.complete
    procs.kill("worker", signal.SIGTERM)
    procs.join(10)
    for left in tmp_path.glob("*.ipc"):  # by the distributor we SIGKILLed
        left.unlink()


@pytest.mark.timeout(60)
def test_a_changed_size_is_refused_and_fresh_starts_anew(procs, endpoints, tmp_path):
    ep = endpoints
    journals = tmp_path / "journals"
    dist_journal = journals / "distributor.sqlite"
    big, small = make_task(ep.worker, 4000, "FIRST"), make_task(ep.worker, 1000, "FIRST")
    big.n_items, small.n_items = 4000, 1000
    journal = DistributorJournal(dist_journal)  # as a run of ``big`` killed early leaves it
    from zmqpipeline.journal.fingerprint import fingerprint

    journal.begin(5, {"FIRST": big.__name__}, {"FIRST": fingerprint(big())})
    journal.close(complete=False)
    with pytest.raises(JournalError, match=r"task FIRST: size 4000 -> 1000"):
        Distributor(ep.collector, ep.ack, tasks=[small], journal=dist_journal).run()
    log = tmp_path / "handled.log"
    worker = echo_worker(ep.worker, ep.collector, "FIRST")
    coll = collector_class(ep, log)
    procs.start("collector", lambda: run_collector(coll, journals / "collector.sqlite"))
    procs.start("worker", lambda: worker().run())
    procs.start("distributor", lambda: run_distributor(ep, [small], dist_journal, fresh=True))
    assert procs.join(30) == {"collector": 0, "worker": 0, "distributor": 0}
    assert load(ep.report)["collected"] == {"FIRST": 1000}
