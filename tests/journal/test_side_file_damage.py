"""A damaged line in the collector's side file (issue 28): it used to crash the collector
at every restart (``OverflowError``, then "cannot start a transaction within a
transaction" from ``close()``). Now the line is skipped with a WARNING saying what may
be lost, and the run goes on. Real processes, then the journal itself."""

from __future__ import annotations

import logging
import os
import signal

import pytest
from edges_helpers import collector_class, handled, load, run_collector, run_distributor
from edges_helpers import worker_class as echo_worker
from support.pipelines import make_task
from support.procs import FORK

from zmqpipeline.errors import JournalError
from zmqpipeline.journal import CollectorJournal
from zmqpipeline.runtime.seen import SeenSet

N = 1000


@pytest.mark.timeout(60)
def test_a_bad_side_file_line_is_skipped_with_a_warning_and_the_run_ends(
    procs, endpoints, tmp_path
):
    ep = endpoints
    journals = tmp_path / "journals"
    dist_journal, coll_journal = journals / "distributor.sqlite", journals / "collector.sqlite"
    log = tmp_path / "handled.log"
    task = make_task(ep.worker, N, "FIRST")
    worker = echo_worker(ep.worker, ep.collector, "FIRST")
    halfway = FORK.Event()
    doomed = collector_class(ep, log, {N // 2: halfway}, stall_at=N // 2)
    procs.start("doomed-c", lambda: run_collector(doomed, coll_journal))
    procs.start("worker", lambda: worker().run())
    procs.start("doomed-d", lambda: run_distributor(ep, [task], dist_journal))
    assert halfway.wait(30)
    for name in ("doomed-d", "doomed-c"):
        procs.kill(name, signal.SIGKILL)
        procs.started[name].join(10)
    with open(str(coll_journal) + "-handled", "ab") as side:
        side.write(b"FIRST\t99999999999999999999\nFIRST\tnot a number\n")
    stderr = tmp_path / "collector.err"
    procs.start("collector", lambda: run_collector(collector_class(ep, log), coll_journal, stderr))
    procs.start("distributor", lambda: run_distributor(ep, [task], dist_journal))
    codes = procs.join(40)
    assert codes["collector"] == 0 and codes["distributor"] == 0, (codes, _text(stderr))
    ids = handled(log)
    assert sorted(i for _, i in ids) == list(range(1, N + 1))
    assert max(ids.values()) == 1
    assert load(ep.report)["collected"] == {"FIRST": N}


def _text(path):
    return path.read_text() if path.exists() else ""


def test_the_side_file_warning_says_what_may_be_lost(tmp_path, caplog):
    path = tmp_path / "collector.sqlite"
    journal = CollectorJournal(path)
    journal.follow(7, {"T": SeenSet()})
    journal.handled("T", 0)
    journal.handled("T", 1)
    with open(str(path) + "-handled", "ab") as side:  # as a kill would leave it, damaged
        side.write(b"T\t99999999999999999999\n")
    journal._store.close()  # killed: no commit
    warnings = []
    for _ in range(2):  # and again: never a crash loop
        caplog.clear()
        again = CollectorJournal(path)
        seen = {"T": SeenSet()}
        with caplog.at_level(logging.WARNING, "zmqpipeline.collector"):
            assert again.follow(7, seen) == 2
        assert 0 in seen["T"] and 1 in seen["T"]
        again.close()
        warnings.append([r.getMessage() for r in caplog.records])
    first, second = warnings
    assert len(first) == 1 and "1 damaged line(s) skipped" in first[0], first
    assert "99999999999999999999" in first[0] and "may be handled again" in first[0]
    assert second == []  # the first restart folded the good ids in and emptied the file


def _write_past_a_size_limit(path, out) -> None:
    """In a forked child (the file-size limit is the process's): record id 1, then id 2
    with room for 3 of its 4 bytes, as a full disk's last page leaves a line half-written
    (``write`` returns a short count, and only the next one fails)."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failing write, not a killed process
    journal = CollectorJournal(path)
    journal.follow(7, {"T": SeenSet()})
    journal.handled("T", 1)
    size = os.path.getsize(str(path) + "-handled")
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 3, hard))
    try:
        journal.handled("T", 2)
        said = "no error"
    except JournalError as exc:
        said = str(exc)
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    out.write_text(said)
    os._exit(0)  # killed: no commit, no close


@pytest.mark.timeout(30)
def test_an_id_written_in_part_is_an_error_and_leaves_no_half_line(tmp_path):
    # Found by CI at 078df0f: a full tmpfs took the line of one id in part, the next id's
    # write failed, and the restart handled both again (the half line was dropped).
    path, out = tmp_path / "collector.sqlite", tmp_path / "said.txt"
    child = FORK.Process(target=_write_past_a_size_limit, args=(path, out))
    child.start()
    child.join(20)
    assert child.exitcode == 0
    said = out.read_text()
    assert said.startswith(f"journal {path}-handled cannot be written: "), said
    assert (tmp_path / "collector.sqlite-handled").read_bytes() == b"T\t1\n"  # whole lines
    again = CollectorJournal(path)
    seen = {"T": SeenSet()}
    assert again.follow(7, seen) == 1 and 1 in seen["T"] and 2 not in seen["T"]
    again.close()


def test_a_line_cut_by_a_kill_is_not_glued_to_the_next_id(tmp_path):
    path = tmp_path / "collector.sqlite"
    first = CollectorJournal(path)
    first.follow(7, {"T": SeenSet()})
    first.close()
    with open(str(path) + "-handled", "ab") as side:
        side.write(b"T\t")  # killed mid-write
    journal = CollectorJournal(path)
    assert journal.follow(7, {"T": SeenSet()}) == 0
    journal.handled("T", 5)
    journal._store.close()  # killed again: no commit
    again = CollectorJournal(path)
    seen = {"T": SeenSet()}
    assert again.follow(7, seen) == 1 and 5 in seen["T"]
    again.close()
