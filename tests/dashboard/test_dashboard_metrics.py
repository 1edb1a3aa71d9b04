"""``/metrics``: scraped from ``zmqpipeline metrics`` (a real subprocess) during a real run,
every scrape parsed by ``prometheus_client.parser``, the last one's counts equal to the
run's report; and the docs' list of metrics equal to what is emitted."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import ep_fixture, start_pipeline  # noqa: F401  (the fixture `ep`)
from support.pipelines import load

from zmqpipeline.dashboard.metrics import METRICS, exposed_names

pytestmark = pytest.mark.timeout(90)

parser = pytest.importorskip(
    "prometheus_client.parser", reason="prometheus-client is not installed (extra 'dashboard')"
)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "guides" / "dashboard.md"


def scrape(url: str) -> dict[str, Any]:
    """``{family name as exposed: family}`` of one scrape, parsed."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain; version=")
        text = reply.read().decode()
    families = {}
    for family in parser.text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        families[name] = family
    return families


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    family = families[name]
    suffix = {"counter": "_total"}.get(family.type, "")
    found = [
        s.value
        for s in family.samples
        if s.name == family.name + suffix and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, family.samples)
    return float(found[0])


def test_metrics_scraped_during_a_run_parse_and_end_at_the_reports_counts(procs, ep):
    n = 600
    start_pipeline(procs, ep, n, workers=2, delay=0.005, fail=frozenset({5, 50}))
    server = subprocess.Popen(
        [sys.executable, "-m", "zmqpipeline", "metrics", ep.control, "--bind", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics"), url
        scrapes, last_up = 0, None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            families = scrape(url)
            scrapes += 1
            if value(families, "zmqpipeline_up") == 1:
                last_up = families
            elif last_up is not None:
                break  # the distributor has gone: the run is over
            time.sleep(0.2)  # a scrape interval
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0
    codes = procs.join(30)
    assert codes == {name: 0 for name in codes}, codes
    report = load(ep.report)
    assert last_up is not None and scrapes > 3
    assert value(last_up, "zmqpipeline_run_info", state="finished") == 1
    task = {"task_type": "FIRST"}
    assert (
        value(last_up, "zmqpipeline_items_collected_total", **task) == report["collected"]["FIRST"]
    )
    assert value(last_up, "zmqpipeline_items_collected_total", **task) == n - 2
    assert value(last_up, "zmqpipeline_items_failed_total", **task) == len(report["failed"]) == 2
    assert value(last_up, "zmqpipeline_items_retried_total", **task) == report["retries"]
    handed = value(last_up, "zmqpipeline_items_handed_out_total", **task)
    assert handed == report["tasks"]["FIRST"]["handed_out"] == n
    assert value(last_up, "zmqpipeline_items_in_flight", **task) == 0
    assert value(last_up, "zmqpipeline_task_size_items", **task) == n
    workers = last_up["zmqpipeline_worker_items_collected_total"].samples
    per_worker = {s.labels["worker"]: s.value for s in workers if s.name.endswith("_total")}
    assert per_worker == {w["id"]: w["collected"] for w in report["workers"]}
    latency = {s.name: s for s in last_up["zmqpipeline_latency_seconds"].samples}
    assert latency["zmqpipeline_latency_seconds_count"].value == n - 2  # one per item collected
    assert {
        s.labels["le"] for s in last_up["zmqpipeline_latency_seconds"].samples if "le" in s.labels
    } >= {"+Inf", "0.01"}
    assert set(last_up) == exposed_names()  # every family, even those without samples


def documented_metrics() -> list[str]:
    """The names in the docs' metrics table (its rows start with ``| `zmqpipeline_``)."""
    return re.findall(r"^\| `(zmqpipeline_\w+)`", DOCS.read_text(), re.MULTILINE)


def test_the_docs_list_exactly_the_metrics_emitted():
    documented = documented_metrics()
    assert len(documented) == len(set(documented)), "a metric listed twice"
    assert set(documented) == exposed_names()
    assert len(METRICS) == len(documented)
