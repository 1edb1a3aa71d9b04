"""What the dashboard tests share: a real pipeline in forked processes (collector,
workers, a distributor with a control endpoint and, if asked, a journal), a dashboard
server in the test's process, and a headless Chromium driven by Selenium."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support.pipelines import make_collector, make_task

import zmqpipeline as zp
from zmqpipeline import Control, ControlError, Distributor, EndpointAddress, TaskType

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: The distributor stays this long after the end, so the page sees "finished".
END_GRACE_S = "3.0"


@pytest.fixture(name="ep")
def ep_fixture(endpoints: SimpleNamespace, tmp_path: Path) -> SimpleNamespace:
    """The ``endpoints`` of the shared conftest plus an ipc control endpoint."""
    endpoints.control = f"ipc://{tmp_path}/control.ipc"
    return endpoints


@pytest.fixture(name="board")
def board_fixture(ep: SimpleNamespace) -> Iterator[Callable[..., Any]]:
    """Makes started dashboard servers for ``ep.control``; each is closed at the end."""
    from zmqpipeline.dashboard import DashboardServer

    started: list[DashboardServer] = []

    def make(**kwargs: Any) -> DashboardServer:
        server = DashboardServer(ep.control, kwargs.pop("bind", "127.0.0.1:0"), **kwargs)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.close()


def browser_missing() -> str | None:
    """Why no browser test can run here (``None``: they can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (.ci/dashboard.sh installs it)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


def open_browser(width: int = 1280, height: int = 800) -> Any:
    """Debian's Chromium, headless, no sandbox (we run as root), no network but loopback."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--proxy-server=direct://",
        # nothing but loopback resolves: a page that needed the network would show it
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE 127.0.0.2, "
        "EXCLUDE localhost",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)  # the viewport
    return driver


@pytest.fixture(name="browser")
def browser_fixture() -> Iterator[Any]:
    """A headless Chromium at 1280x800 (skips, saying why, where there is none)."""
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    driver = open_browser()
    try:
        yield driver
    finally:
        driver.quit()


def text_of(driver: Any, css: str) -> str:
    """The text of the first element matching ``css``, read again if the page redrew it
    meanwhile (it redraws about once a second); "" if there is none."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(10):
        try:
            found = driver.find_elements(By.CSS_SELECTOR, css)
            return str(found[0].text) if found else ""
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"{css} kept being redrawn")


def page_wait(driver: Any, check: Callable[[Any], Any], timeout: float = 20, what: str = "") -> Any:
    """Wait for the page to show something (Selenium's own wait, polling the DOM)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        from selenium.common.exceptions import StaleElementReferenceException

        wait = WebDriverWait(
            driver,
            timeout,
            poll_frequency=0.05,
            ignored_exceptions=[StaleElementReferenceException],
        )
        return wait.until(check)
    except TimeoutException:
        body = driver.find_element("tag name", "body").text
        raise AssertionError(f"the page did not show {what} within {timeout} s:\n{body}") from None


def wait_chart(driver: Any) -> None:
    """The chart drawn, or, in a checkout without the chart library, the note saying so."""
    from zmqpipeline.dashboard.server import STATIC_DIR

    if (STATIC_DIR / "vendor" / "uPlot.iife.min.js").exists():
        page_wait(driver, lambda d: d.find_elements("css selector", "#chart canvas"), what="chart")
    else:  # python scripts/vendor_uplot.py puts it there (.ci/dashboard.sh runs it)
        page_wait(driver, lambda d: "Chart unavailable" in text_of(d, "#chart-note"), what="note")


def slow_worker(ep: SimpleNamespace, fail: frozenset[int] = frozenset()) -> type:
    """A worker that sleeps ``data['delay']`` per item and raises on the items in ``fail``."""

    class SlowWorker(zp.SingleThreadedWorker):
        task_type = TaskType("FIRST")
        endpoint = EndpointAddress(ep.worker)
        collector_endpoint = EndpointAddress(ep.collector)

        def handle_execution(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            if data["i"] in fail:
                raise ValueError(f"item {data['i']} is poison")
            time.sleep(data["delay"])
            return {"i": data["i"]}

    return SlowWorker


def start_distributor(
    procs: Any,
    ep: SimpleNamespace,
    n: int,
    delay: float,
    name: str = "distributor",
    journal: str | None = None,
) -> None:
    task = make_task(ep.worker, n, delay=delay)
    task.n_items = n  # a known size: the page shows a percentage and an ETA

    def run() -> None:
        os.environ["ZMQPIPELINE_END_GRACE_S"] = END_GRACE_S
        report = Distributor(
            ep.collector, ep.ack, tasks=[task], control_endpoint=ep.control, journal=journal
        ).run()
        with open(ep.report, "w") as out:
            json.dump({**asdict(report), "ok": report.ok}, out)

    procs.start(name, run)


def start_pipeline(
    procs: Any,
    ep: SimpleNamespace,
    n: int,
    workers: int = 2,
    delay: float = 0.005,
    fail: frozenset[int] = frozenset(),
    journal: str | None = None,
) -> None:
    collector = make_collector(ep)
    procs.start("collector", lambda: collector().run())
    worker = slow_worker(ep, fail)
    for i in range(workers):
        procs.start(f"worker{i}", lambda: worker().run())
    start_distributor(procs, ep, n, delay, journal=journal)


def wait_status(
    control: Control, check: Callable[[dict[str, Any]], bool], timeout: float = 20
) -> dict[str, Any]:
    """The first status for which ``check`` holds (status is how a run is seen from outside)."""
    deadline = time.monotonic() + timeout
    status: Any = None
    while time.monotonic() < deadline:
        try:
            status = control.status()
        except ControlError:
            status = None
        else:
            if check(status):
                return status
        time.sleep(0.05)  # the poll interval of a status reader
    raise AssertionError(f"not reached within {timeout} s: {status}")


def wait_gone(control: Control, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            control.status()
        except ControlError:
            return
        time.sleep(0.05)
    raise AssertionError("the distributor did not go")


def static_without_chart(tmp_path: Path) -> Path:
    """A copy of the page's files without the chart library (a dev checkout's case)."""
    from zmqpipeline.dashboard.server import STATIC_DIR

    target = tmp_path / "static"
    shutil.copytree(STATIC_DIR, target, ignore=shutil.ignore_patterns("vendor"))
    return target
