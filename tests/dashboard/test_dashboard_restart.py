"""The page across a journaled distributor's crash: "disconnected" while it is gone, the
data again once it is back at the same control endpoint, and the chart's history since
the page was opened kept. Real processes (SIGKILL, then a new distributor with the same
journal); the page in a headless Chromium."""

from __future__ import annotations

import signal

import pytest
from dashboard_support import (
    board_fixture,  # noqa: F401  (fixtures: board, browser, ep)
    browser_fixture,  # noqa: F401
    ep_fixture,  # noqa: F401
    page_wait,
    start_distributor,
    start_pipeline,
    text_of,
    wait_status,
)
from support.pipelines import load

from zmqpipeline import Control

pytestmark = pytest.mark.timeout(120)


def shown_collected(driver) -> int:
    box = driver.find_elements("css selector", ".task[data-task=FIRST]")
    return int(box[0].get_attribute("data-collected")) if box else -1


def history_length(driver) -> int:
    return int(driver.execute_script("return window.zmqpipelineDashboard.history[0].length"))


def test_disconnected_then_the_data_again_across_a_journaled_restart(
    procs, ep, board, browser, tmp_path
):
    n, journal = 3000, str(tmp_path / "distributor.sqlite")
    start_pipeline(procs, ep, n, workers=2, delay=0.005, journal=journal)
    control = Control(ep.control)
    browser.get(board().url)
    page_wait(browser, lambda d: shown_collected(d) > 300, what="300 collected")
    first_point = browser.execute_script("return window.zmqpipelineDashboard.history[0][0]")
    procs.kill("distributor", signal.SIGKILL)
    procs.started["distributor"].join(10)
    page_wait(browser, lambda d: "disconnected" in text_of(d, "#conn"), what="disconnected")
    before = shown_collected(browser)
    points_before = history_length(browser)
    start_distributor(procs, ep, n, 0.005, name="restarted", journal=journal)
    page_wait(browser, lambda d: "connected to" in text_of(d, "#conn"), what="connected again")
    wait_status(control, lambda s: s["tasks"]["FIRST"]["collected"] > before)
    page_wait(browser, lambda d: shown_collected(d) > before, what="more collected")
    assert history_length(browser) > points_before  # the chart goes on: nothing forgotten
    assert browser.execute_script("return window.zmqpipelineDashboard.history[0][0]") == first_point
    page_wait(
        browser,
        lambda d: "(100.0 %)" in text_of(d, ".task[data-task=FIRST]"),
        timeout=60,
        what="100 %",
    )
    codes = procs.join(40)
    assert codes.pop("distributor") == -signal.SIGKILL
    assert codes == {name: 0 for name in codes}, codes
    report = load(ep.report)
    assert report["collected"] == {"FIRST": n} and report["resumed"]
    assert shown_collected(browser) == n
