"""The dashboard in a real headless Chromium (Selenium, Debian's chromium-driver) during
real runs: collector, workers and distributor are forked processes over ipc, the
dashboard server runs in the test's process and reads the distributor's control
endpoint. Skipped, with the reason, where Chromium or Selenium is missing."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import (
    board_fixture,  # noqa: F401  (fixtures: board, browser, ep)
    browser_fixture,  # noqa: F401
    browser_missing,
    ep_fixture,  # noqa: F401
    open_browser,
    page_wait,
    start_pipeline,
    static_without_chart,
    text_of,
    wait_chart,
    wait_status,
)
from support.pipelines import load

from zmqpipeline import Control

pytestmark = pytest.mark.timeout(90)

# Set: the screenshots are kept there (docs/images/ has the two the docs show)
SCREENSHOTS = os.environ.get("DASHBOARD_SCREENSHOT_DIR")


def shown_collected(driver: Any) -> int:
    box = driver.find_elements("css selector", ".task[data-task=FIRST]")
    return int(box[0].get_attribute("data-collected")) if box else -1


def task_text(driver: Any) -> str:
    return text_of(driver, ".task[data-task=FIRST]")


def keep_screenshot(driver: Any, tmp_path: Path, name: str, whole: bool = False) -> Path:
    """A PNG of the viewport (``whole``: of the whole page, as tall as it is)."""
    path = tmp_path / name
    if whole:
        width = driver.execute_script("return window.innerWidth")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    assert driver.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if SCREENSHOTS:
        shutil.copy(path, Path(SCREENSHOTS) / name)
    return path


def test_progress_reaches_100_percent_with_the_exact_collected_count(
    procs, ep, board, browser, tmp_path
):
    n = 600
    start_pipeline(procs, ep, n, workers=2, delay=0.01, fail=frozenset({7}))
    browser.get(board().url)
    page_wait(browser, lambda d: "connected to" in text_of(d, "#conn"), what="connected")
    page_wait(
        browser,
        lambda d: "collected" in task_text(d) and "items/s" in task_text(d),
        what="progress",
    )
    page_wait(
        browser,
        lambda d: (
            "1 failed" in text_of(d, "#h-failures") or "item 7 is poison" in text_of(d, "#failures")
        ),
        what="the failure",
    )
    wait_chart(browser)
    page_wait(browser, lambda d: shown_collected(d) >= 0.6 * n, what="60 %")
    keep_screenshot(browser, tmp_path, "dashboard-progress.png")
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    origin = browser.execute_script("return location.origin")
    assert resources and all(r.startswith(origin + "/") for r in resources), resources
    page_wait(browser, lambda d: "(100.0 %)" in task_text(d), timeout=60, what="100 %")
    text = task_text(browser)
    codes = procs.join(30)
    assert codes == {name: 0 for name in codes}, codes
    report, results = load(ep.report), load(ep.results)
    collected = report["collected"]["FIRST"]
    assert collected == len(results["items"]) == n - 1
    assert f"collected {collected} " in text + " " and "failed 1 " in text + " ", text
    assert browser.find_element("css selector", ".task[data-task=FIRST]").get_attribute(
        "data-collected"
    ) == str(collected)
    assert "FIRST/" in text_of(browser, "#failures") and "item 7 is poison" in text_of(
        browser, "#failures"
    )
    page_wait(
        browser, lambda d: "disconnected" in text_of(d, "#conn"), what="disconnected at the end"
    )
    assert "(100.0 %)" in task_text(browser)  # the last data stays on the page


def test_a_sigkilled_worker_is_marked_lost_and_stop_asks_first(procs, ep, board, browser, tmp_path):
    start_pipeline(procs, ep, 100_000, workers=2, delay=0.01, fail=frozenset({30, 70}))
    control = Control(ep.control)
    wait_status(control, lambda s: len(s["workers"]) == 2 and s["tasks"]["FIRST"]["collected"] > 10)
    browser.get(board().url)
    killed = procs.started["worker0"].pid
    page_wait(
        browser,
        lambda d: len(d.find_elements("css selector", "#workers tr.alive")) == 2,
        what="2 workers",
    )
    procs.kill("worker0")
    row = f"#workers tr[data-worker*=':{killed}:']"
    page_wait(browser, lambda d: "LOST (worker " in text_of(d, row), what="the lost worker")
    assert "(1 alive, 1 lost)" in text_of(browser, "#h-workers")
    assert str(killed) in text_of(browser, row)
    if SCREENSHOTS:  # for the docs: a chart with some history, the failures, the lost worker
        page_wait(
            browser, lambda d: len(d.find_elements("css selector", "#failures tbody tr")) == 2
        )
        page_wait(
            browser,
            lambda d: d.execute_script("return window.zmqpipelineDashboard.history[0].length") > 12,
        )
        keep_screenshot(browser, tmp_path, "dashboard.png", whole=True)
    browser.find_element("id", "stop").click()  # asks first: dismissed, nothing happens
    browser.switch_to.alert.dismiss()
    assert control.status()["state"] == "running"
    browser.find_element("id", "stop").click()
    browser.switch_to.alert.accept()
    page_wait(
        browser, lambda d: "stop: the run is finished" in text_of(d, "#reply"), what="stopped"
    )
    codes = procs.join(20)
    assert codes["distributor"] == 0 and load(ep.report)["ended_by"] == "stopped"


def test_pause_stops_dispatch_resume_goes_on_drain_asks_and_ends(procs, ep, board, browser):
    start_pipeline(procs, ep, 100_000, workers=2, delay=0.01)
    control = Control(ep.control)
    browser.get(board().url)
    page_wait(browser, lambda d: text_of(d, "#state") == "running", what="running")
    browser.find_element("id", "pause").click()
    page_wait(browser, lambda d: "pause: the run is paused" in text_of(d, "#reply"), what="paused")
    held = wait_status(control, lambda s: s["tasks"]["FIRST"]["in_flight"] == 0)
    assert held["state"] == "paused"
    page_wait(browser, lambda d: text_of(d, "#state") == "paused", what="the state paused")
    time.sleep(1.0)  # a window in which nothing may be handed out
    again = control.status()["tasks"]["FIRST"]
    assert again["handed_out"] == held["tasks"]["FIRST"]["handed_out"] == again["collected"]
    assert browser.find_element("id", "pause").get_attribute("disabled")
    browser.find_element("id", "resume").click()
    handed = again["handed_out"]
    wait_status(control, lambda s: s["tasks"]["FIRST"]["handed_out"] > handed + 20)
    browser.find_element("id", "drain").click()
    browser.switch_to.alert.accept()
    page_wait(
        browser, lambda d: "drain: the run is draining" in text_of(d, "#reply"), what="draining"
    )
    codes = procs.join(20)
    assert codes == {name: 0 for name in codes}, codes
    assert load(ep.report)["ended_by"] == "drained"


def test_the_page_says_the_chart_is_missing_and_still_shows_the_run(
    procs, ep, board, browser, tmp_path
):
    start_pipeline(procs, ep, 100_000, workers=1, delay=0.01)
    browser.get(board(static_dir=static_without_chart(tmp_path)).url)
    page_wait(browser, lambda d: "Chart unavailable" in text_of(d, "#chart-note"), what="the note")
    page_wait(browser, lambda d: "collected" in task_text(d), what="progress")
    assert not browser.find_elements("css selector", "#chart canvas")
    Control(ep.control).stop()
    procs.join(20)


def test_readable_at_a_phones_width(procs, ep, board, tmp_path):
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    start_pipeline(procs, ep, 100_000, workers=2, delay=0.01)
    phone = open_browser(390, 844)
    try:
        phone.get(board().url)
        page_wait(
            phone,
            lambda d: len(d.find_elements("css selector", "#workers tr.alive")) == 2,
            what="workers",
        )
        page_wait(phone, lambda d: "items/s" in task_text(d), what="progress")
        width = phone.execute_script("return document.documentElement.scrollWidth")
        inner = phone.execute_script("return window.innerWidth")
        assert width <= inner, (width, inner)  # wide tables scroll inside their box
        keep_screenshot(phone, tmp_path, "dashboard-phone.png")
    finally:
        phone.quit()
    Control(ep.control).stop()
    procs.join(20)
