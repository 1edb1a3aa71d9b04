"""A streaming stage with journals, every role SIGKILLed at about half way and restarted
with the same journals (issue 28): every derived item reaches ``handle_collection`` once,
every ``derive`` failure is reported, the report adds up. Real processes over ipc."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest
from edges_helpers import (
    collector_class,
    handled,
    load,
    run_collector,
    run_distributor,
    worker_class,
)
from support.procs import FORK

from zmqpipeline import EndpointAddress, Task, TaskType

N = 3000  # source items; derive raises on every 100th: 30 failures, 2 970 derived
ROUNDS = range(5)


def staged_tasks(ep: SimpleNamespace, n: int) -> list[type[Task]]:
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
            if result["i"] % 100 == 0:
                raise ValueError(f"no stage item from {result['i']}")
            return {"i": result["i"], "delay": 0.0005}

    Source.task_type, Source.endpoint = TaskType("EJ_SRC"), EndpointAddress(ep.worker)
    Source.n_items = n
    Stage.task_type, Stage.endpoint = TaskType("EJ_STAGE"), EndpointAddress(ep.worker2)
    Stage.sources = [TaskType("EJ_SRC")]
    return [Source, Stage]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("round_", ROUNDS)
def test_staged_run_killed_everywhere_and_resumed_derives_each_item_once(
    procs, endpoints, tmp_path, round_
):
    ep, n = endpoints, N
    journals = tmp_path / "journals"
    dist_journal, coll_journal = journals / "distributor.sqlite", journals / "collector.sqlite"
    log = tmp_path / "handled.log"
    tasks = staged_tasks(ep, n)
    source_worker = worker_class(ep.worker, ep.collector, "EJ_SRC")
    stage_worker = worker_class(ep.worker2, ep.collector, "EJ_STAGE")
    halfway = FORK.Event()
    stall = n  # of about 2 n ids handled in all
    doomed = collector_class(ep, log, {stall: halfway}, stall_at=stall)

    def start_all(tag: str, collector: type) -> None:
        procs.start(f"collector{tag}", lambda: run_collector(collector, coll_journal))
        for k in range(2):
            procs.start(f"src{tag}{k}", lambda: source_worker().run())
            procs.start(f"stage{tag}{k}", lambda: stage_worker().run())
        procs.start(f"distributor{tag}", lambda: run_distributor(ep, tasks, dist_journal))

    start_all("-doomed", doomed)
    assert halfway.wait(60), "the run never got half way"
    for name in ["distributor-doomed", "collector-doomed"] + [
        f"{role}-doomed{k}" for role in ("src", "stage") for k in range(2)
    ]:
        procs.kill(name, signal.SIGKILL)
        procs.started[name].join(10)
    before = handled(log)
    assert 0 < len(before) < 2 * n
    start_all("", collector_class(ep, log))
    codes = procs.join(60)
    assert {k: v for k, v in codes.items() if "doomed" not in k} == {
        "collector": 0,
        "src0": 0,
        "src1": 0,
        "stage0": 0,
        "stage1": 0,
        "distributor": 0,
    }, codes
    ids = handled(log)
    twice = sorted(key for key, count in ids.items() if count > 1)
    assert not twice, f"handled twice: {len(twice)}, e.g. {twice[:10]}"
    derived = [i for i in range(1, n + 1) if i % 100]
    assert sorted(i for tt, i in ids if tt == "EJ_SRC") == list(range(1, n + 1))
    stage_ids = sorted(i for tt, i in ids if tt == "EJ_STAGE")
    missing = sorted(set(derived) - set(stage_ids))
    assert stage_ids == derived, f"{len(missing)} derived item(s) never collected: {missing[:10]}"
    report = load(ep.report)
    failures = sorted(f["item_id"] for f in report["failed"])
    assert failures == sorted(f"EJ_STAGE/derive(EJ_SRC/{i - 1})" for i in range(100, n + 1, 100))
    assert report["collected"] == {"EJ_SRC": n, "EJ_STAGE": len(derived)}
    stage = report["tasks"]["EJ_STAGE"]
    assert (stage["handed_out"], stage["in_flight"], stage["backlog"]) == (len(derived), 0, 0)
    assert report["resumed"]["run"] and not report["aborted"]
    print(
        f"round {round_}: {len(before)} ids handled before the kill; resumed "
        f"{report['resumed']['skipped']} skipped, {report['resumed']['re_handed_out']} again"
    )
