"""A Task that gives its items with ``items()`` (a list or a generator), run as a real
pipeline of forked processes: every item collected once, the size known from a
``len()``, the task complete after its last item with no ``is_complete`` by hand, an
empty iterable, a bad element named, ``handle`` beside it refused, and a distributor
SIGKILLed halfway resumed from its journal without handing out again what was ACKed."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support.pipelines import load, make_collector, make_worker
from support.procs import FORK

from zmqpipeline import Distributor, EndpointAddress, Task, TaskType
from zmqpipeline.journal import DistributorJournal

pytestmark = pytest.mark.timeout(90)

FIRST = TaskType.register_type("FIRST")


def list_task(ep: str, n: int, delay: float = 0.0) -> type[Task]:
    class ListTask(Task):
        task_type = FIRST
        endpoint = EndpointAddress(ep)

        def items(self) -> list[dict[str, Any]]:
            return [{"i": i, "delay": delay} for i in range(1, n + 1)]

    return ListTask


def generator_task(ep: str, n: int, delay: float = 0.0) -> type[Task]:
    class GeneratorTask(Task):
        task_type = FIRST
        endpoint = EndpointAddress(ep)

        def items(self) -> Iterator[dict[str, Any]]:
            for i in range(1, n + 1):
                yield {"i": i, "delay": delay}

    return GeneratorTask


def run(procs: Any, ep: SimpleNamespace, task: type[Task], journal: Path | None = None) -> None:
    """The distributor of ``task`` in a process of its own; its report in ``ep.report``."""

    def distributor() -> None:
        report = Distributor(ep.collector, ep.ack, tasks=[task], journal=journal).run()
        with open(ep.report, "w") as out:
            json.dump(asdict(report), out)

    procs.start("distributor", distributor)


def start_roles(procs: Any, ep: SimpleNamespace, workers: int = 2, **collector: Any) -> None:
    cls = make_collector(ep, **collector)
    procs.start("collector", lambda: cls().run())
    worker = make_worker(ep.worker, ep.collector)
    for n in range(workers):
        procs.start(f"worker{n}", lambda: worker().run())


def collected_ids(ep: SimpleNamespace) -> list[int]:
    return sorted(data["i"] for _, data, _, _ in load(ep.results)["items"])


@pytest.mark.parametrize("make", [list_task, generator_task])
def test_items_are_each_collected_once_and_the_task_completes(procs, endpoints, make) -> None:
    run(procs, endpoints, make(endpoints.worker, 300))
    start_roles(procs, endpoints)
    codes = procs.join(60)
    assert set(codes.values()) == {0}, codes
    assert collected_ids(endpoints) == list(range(1, 301))
    report = load(endpoints.report)
    assert report["collected"] == {"FIRST": 300} and not report["failed"]
    (task,) = report["tasks"].values()
    # a list has a len(): the size is known; a generator's is not
    assert task["size"] == (300 if make is list_task else None)
    assert task["handed_out"] == 300


def test_the_size_of_a_list_drives_the_progress_summary() -> None:
    task = list_task("ipc:///tmp/unused-task-items", 7)()
    assert task.n_items == 7 and not task.is_complete
    assert [task.handle({}, b"w", "data")["i"] for _ in range(7)] == list(range(1, 8))
    assert task.is_complete  # with the last item, not one call later


def test_an_empty_iterable_completes_at_once(procs, endpoints) -> None:
    run(procs, endpoints, generator_task(endpoints.worker, 0))
    start_roles(procs, endpoints, workers=1)
    codes = procs.join(60)
    assert set(codes.values()) == {0}, codes
    report = load(endpoints.report)
    assert report["collected"] == {"FIRST": 0} and not report["failed"]


def test_an_element_that_is_not_a_dict_is_named(procs, endpoints, caplog) -> None:
    class Paths(Task):
        task_type = FIRST
        endpoint = EndpointAddress(endpoints.worker)

        def items(self) -> list[Any]:
            return [{"i": 1}, "/etc/hostname"]

    run(procs, endpoints, Paths)
    start_roles(procs, endpoints, workers=1)
    codes = procs.join(60)
    assert codes["distributor"] in (0, 1), codes
    report = load(endpoints.report)
    assert report["collected"] == {"FIRST": 1}
    (failure,) = report["failed"]
    assert "Paths.items() must give dicts (or None), not str ('/etc/hostname')" in failure["error"]


def test_items_and_handle_in_one_class_are_refused() -> None:
    with pytest.raises(TypeError, match="Both defines both items\\(\\) and handle\\(\\)"):

        class Both(Task):
            task_type = FIRST
            endpoint = EndpointAddress("ipc:///tmp/unused-task-items")

            def items(self) -> list[dict[str, Any]]:
                return []

            def handle(self, data: Any, address: Any, msgtype: Any) -> dict[str, Any]:
                return {}


def acked_in(journal_path: Path) -> set[int]:
    journal = DistributorJournal(journal_path)
    try:
        loaded = journal.load()
    finally:
        journal.close(complete=False)
    assert loaded is not None
    done = loaded.done["FIRST"]
    return {seq for seq in range(done.low)} | set(done.above)


@pytest.mark.parametrize("make", [list_task, generator_task])
def test_a_killed_distributor_resumes_an_items_task_from_its_journal(
    procs, endpoints, tmp_path, make
) -> None:
    n = 400
    halfway = FORK.Event()
    journal = tmp_path / "distributor.sqlite"
    task = make(endpoints.worker, n, delay=0.005)
    start_roles(procs, endpoints, milestones={n // 2: halfway})
    run(procs, endpoints, task, journal)
    assert halfway.wait(60)
    procs.kill("distributor", signal.SIGKILL)
    procs.started["distributor"].join(10)
    acked = acked_in(journal)
    assert n // 4 < len(acked) < n
    procs.started.pop("distributor")
    run(procs, endpoints, task, journal)
    codes = procs.join(60)
    assert set(codes.values()) == {0}, codes
    assert collected_ids(endpoints) == list(range(1, n + 1))  # each once, none lost
    report = load(endpoints.report)
    assert report["collected"] == {"FIRST": n} and not report["failed"]
    assert report["resumed"]["skipped"]["FIRST"] >= len(acked)  # ACKed: not sent again
