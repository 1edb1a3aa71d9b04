"""A journal whose disk fills mid-run (issue 28): the run stops with one clear line naming
the journal and the cause, END still reaches every role, nothing is lost, and a restart
with space goes on. The journals live on a 1 MiB tmpfs mounted by the test (root only)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from edges_helpers import collector_class, handled, is_root, load, run_collector, worker_class

from zmqpipeline import Distributor, EndpointAddress, Task, TaskType

pytestmark = pytest.mark.skipif(
    not is_root(), reason="mounting a small tmpfs to fill needs root (mount -t tmpfs)"
)

N = 600  # source items; each derives one stage item of 4 KB, journaled in the backlog


def padded_tasks(ep: SimpleNamespace, n: int) -> list[type[Task]]:
    class Source(Task):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def handle(self, data, address, msgtype):
            self.n += 1
            if self.n >= n:
                self.is_complete = True
            return {"i": self.n}

    class Stage(Task):
        def derive(self, result, item_id):
            return {"i": result["i"], "pad": "x" * 4096}

    Source.task_type, Source.endpoint = TaskType("EJ_SRC"), EndpointAddress(ep.worker)
    Stage.task_type, Stage.endpoint = TaskType("EJ_STAGE"), EndpointAddress(ep.worker2)
    Stage.sources = [TaskType("EJ_SRC")]
    return [Source, Stage]


def _distributor(ep, tasks, journal, log_file: Path) -> None:
    import json
    import logging
    from dataclasses import asdict

    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.WARNING)
    logging.getLogger("zmqpipeline").addHandler(handler)
    report = Distributor(ep.collector, ep.ack, tasks=tasks, journal=journal).run()
    with open(ep.report, "w") as out:
        json.dump(asdict(report), out)


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "journals"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.timeout(90)
def test_a_full_disk_stops_the_run_in_one_line_and_a_restart_with_space_goes_on(
    procs, endpoints, tmp_path, small_disk
):
    ep, n = endpoints, N
    dist_journal = small_disk / "distributor.sqlite"
    coll_journal = small_disk / "collector.sqlite"
    log, dist_log = tmp_path / "handled.log", tmp_path / "distributor.log"
    tasks = padded_tasks(ep, n)
    source_worker = worker_class(ep.worker, ep.collector, "EJ_SRC")
    stage_worker = worker_class(ep.worker2, ep.collector, "EJ_STAGE")

    def start_all(tag: str) -> None:
        collector = collector_class(ep, log)
        procs.start(f"collector{tag}", lambda: run_collector(collector, coll_journal))
        procs.start(f"src{tag}", lambda: source_worker().run())
        procs.start(f"stage{tag}", lambda: stage_worker().run())
        procs.start(f"distributor{tag}", lambda: _distributor(ep, tasks, dist_journal, dist_log))

    (small_disk / "filler").write_bytes(b"\0" * 760 * 1024)  # what else uses the disk
    start_all("-full")
    codes = procs.join(40)
    assert all(code == 0 for code in codes.values()), codes  # END reached every role
    lines = dist_log.read_text().splitlines()
    full = [line for line in lines if "database or disk is full" in line]
    assert len(full) == 1, lines
    assert full[0].startswith(f"journal {dist_journal} cannot be written: database or disk")
    assert "Traceback" not in dist_log.read_text()
    report = load(ep.report)
    assert report["aborted"] and report["ended_by"] == "stopped"
    before = handled(log)
    assert len(before) < 2 * n  # it stopped before the end

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space
    ep.report.unlink()
    start_all("")
    codes = procs.join(60)
    assert all(code == 0 for code in codes.values()), codes
    ids = handled(log)
    for task_type, expected in (("EJ_SRC", n), ("EJ_STAGE", n)):
        got = sorted(i for tt, i in ids if tt == task_type)
        assert sorted(set(got)) == list(range(1, expected + 1)), f"{task_type}: lost some"
    twice = [key for key, count in ids.items() if count > 1]
    assert len(twice) <= 1, twice  # the collector's window of one item, if its write failed
    report = load(ep.report)
    assert report["collected"] == {"EJ_SRC": n, "EJ_STAGE": n} and not report["aborted"]
