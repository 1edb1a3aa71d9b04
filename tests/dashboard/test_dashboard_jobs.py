"""The dashboard lists a scheduled task's jobs (issue 34), in a real headless Chromium:
a collector, a worker and a distributor with a control endpoint are forked processes
over ipc; the page shows each job's id, rule, next run, last status with its time and
last error as the distributor's status says them. Skipped, with the reason, where
Chromium, Selenium or python-dateutil is missing."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from dashboard_support import (
    board_fixture,  # noqa: F401  (fixtures: board, browser, ep)
    browser_fixture,  # noqa: F401
    ep_fixture,  # noqa: F401
    page_wait,
    start_pipeline,
    text_of,
    wait_status,
)
from support.pipelines import make_collector

from zmqpipeline import (
    Control,
    Distributor,
    EndpointAddress,
    Schedule,
    ScheduledTask,
    SingleThreadedWorker,
    TaskType,
)

pytest.importorskip("dateutil", reason="RRULEs need python-dateutil (pip install '.[schedule]')")
pytestmark = pytest.mark.timeout(90)

TaskType.register_type("DJOBS")
LATER = "AT:2099-01-01T00:00:00Z"


def start_scheduled_run(procs: Any, ep: SimpleNamespace) -> None:
    class Jobs(ScheduledTask):
        task_type = TaskType("DJOBS")
        endpoint = EndpointAddress(ep.worker)
        schedule = Schedule(
            jobs={
                "tick": ("FREQ=SECONDLY;INTERVAL=2", {}),
                "broken": ("CONTINUE", {"raise": "the disk is full"}),
                "later": (LATER, {}),
                "nonsense": ("EVERY OTHER TUESDAY", {}),
            }
        )

    class JobWorker(SingleThreadedWorker):
        task_type = TaskType("DJOBS")
        endpoint = EndpointAddress(ep.worker)
        collector_endpoint = EndpointAddress(ep.collector)

        def handle_execution(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            if "raise" in data["data"]:
                raise OSError(data["data"]["raise"])
            return {"job": data["job"]}

    def run() -> None:
        report = Distributor(ep.collector, ep.ack, tasks=[Jobs], control_endpoint=ep.control).run()
        with open(ep.report, "w") as out:
            json.dump({"ended_by": report.ended_by}, out)

    collector = make_collector(ep)
    procs.start("collector", lambda: collector().run())
    procs.start("worker", lambda: JobWorker().run())
    procs.start("distributor", run)


def jobs_of(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The jobs the status lists (what the page draws), by id."""
    return {j["job"]: j for j in status.get("schedule", {}).get("DJOBS", {}).get("list", [])}


def row(driver: Any, job: str) -> str:
    return text_of(driver, f"#jobs tr[data-job={job}]")


def test_the_page_lists_each_job_with_its_rule_next_run_status_and_last_error(
    procs, ep, board, browser
):
    start_scheduled_run(procs, ep)
    control = Control(ep.control)
    status = wait_status(control, lambda s: jobs_of(s).get("broken", {}).get("status") == "failed")
    listed = jobs_of(status)
    assert set(listed) == {"tick", "broken", "later", "nonsense"}
    assert listed["later"]["next_run"] == 4070908800.0 and listed["later"]["rule"] == LATER
    browser.get(board().url)
    page_wait(browser, lambda d: "(4)" in text_of(d, "#h-jobs"), what="the jobs' table")
    page_wait(
        browser,
        lambda d: (
            "FREQ=SECONDLY;INTERVAL=2" in row(d, "tick")
            and any(s in row(d, "tick") for s in ("scheduled", "running", "queued"))
        ),
        what="tick with its rule and status",
    )
    tick = browser.find_element("css selector", "#jobs tr[data-job=tick]")
    cells = [td.text for td in tick.find_elements("css selector", "td")]
    assert cells[:3] == ["tick", "DJOBS", "FREQ=SECONDLY;INTERVAL=2"], cells
    assert cells[3] == "-" or "(in " in cells[3] or "(due)" in cells[3], cells
    broken = row(browser, "broken")
    assert "CONTINUE" in broken and "failed" in broken and "the disk is full" in broken, broken
    later = row(browser, "later")
    assert LATER in later and "2099" in later and "scheduled" in later, later
    nonsense = row(browser, "nonsense")
    assert "bad rule" in nonsense and "unknown rule" in nonsense, nonsense
    # The page follows the run: a job set now appears with its rule.
    control.call("schedule_set", {"job": "added", "rule": "FREQ=MINUTELY;INTERVAL=7"})
    page_wait(
        browser,
        lambda d: "FREQ=MINUTELY;INTERVAL=7" in row(d, "added") and "(5)" in text_of(d, "#h-jobs"),
        what="the job set while the page was open",
    )
    control.drain()
    codes = procs.join(30)
    assert codes == {name: 0 for name in codes}, codes


def test_a_run_without_a_schedule_shows_no_jobs_table(procs, ep, board, browser):
    start_pipeline(procs, ep, 100_000, workers=1, delay=0.01)
    browser.get(board().url)
    page_wait(browser, lambda d: "collected" in text_of(d, ".task[data-task=FIRST]"))
    assert not browser.find_element("id", "jobs-section").is_displayed()
    Control(ep.control).stop()
    procs.join(20)
