"""``/metrics``: the latest status snapshot in Prometheus' text format, through the
``prometheus-client`` package (``pip install 'zmqpipeline[dashboard]'``).

Every metric is in :data:`METRICS` (the docs list the same names; a test checks it). The
counters are the distributor's own counts, so a restarted distributor's counters go on
from its journal, except ``zmqpipeline_latency_seconds``, which counts the items collected
since the distributor process started (a reset Prometheus' ``rate()`` takes in its stride).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .poller import StatusPoller

__all__ = ["METRICS", "MetricsUnavailable", "exposed_names", "render_metrics"]

_T = ("task_type",)
_W = ("worker", "task_type")

#: (name as the client library takes it, type, help, label names). A counter is exposed
#: with the suffix ``_total``; the histogram as ``_bucket``, ``_count`` and ``_sum``.
METRICS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("zmqpipeline_up", "gauge", "1 if the distributor answered the latest status read", ()),
    ("zmqpipeline_run_info", "gauge", "The run watched (1): its id, state", ("run", "state")),
    ("zmqpipeline_uptime_seconds", "gauge", "Seconds since the distributor started", ()),
    ("zmqpipeline_items_handed_out", "counter", "Items handed out to workers", _T),
    ("zmqpipeline_items_collected", "counter", "Items collected (ACKed)", _T),
    ("zmqpipeline_items_failed", "counter", "Items that failed for good", _T),
    ("zmqpipeline_items_retried", "counter", "Items handed out again", _T),
    ("zmqpipeline_items_in_flight", "gauge", "Items handed out, not yet collected", _T),
    ("zmqpipeline_task_size_items", "gauge", "A task's declared size in items", _T),
    ("zmqpipeline_stage_backlog_items", "gauge", "Items waiting in a stage's backlog", _T),
    ("zmqpipeline_workers_alive", "gauge", "Workers connected", _T),
    ("zmqpipeline_workers_lost", "gauge", "Workers declared dead or gone", _T),
    ("zmqpipeline_worker_items_collected", "counter", "Items a worker ran, collected", _W),
    ("zmqpipeline_worker_items_in_flight", "gauge", "Items a worker holds", _W),
    ("zmqpipeline_worker_heartbeat_age_seconds", "gauge", "Seconds since a worker was heard", _W),
    ("zmqpipeline_latency_seconds", "histogram", "Hand-out to ACK time of collected items", ()),
    (
        "zmqpipeline_messages_dropped",
        "counter",
        "Bad messages the distributor dropped",
        ("reason",),
    ),
    ("zmqpipeline_collector_connected", "gauge", "1 if the collector is connected", ()),
)


class MetricsUnavailable(RuntimeError):
    """``prometheus-client`` is not installed."""


def exposed_names() -> set[str]:
    """The metric family names as Prometheus' text format spells them (``..._total``)."""
    return {name + "_total" if kind == "counter" else name for name, kind, _, _ in METRICS}


def _values(snapshot: dict[str, Any]) -> Iterator[tuple[str, tuple[str, ...], float]]:
    """``(metric, label values, value)`` for every sample but the histogram's."""
    status = snapshot["status"]
    yield "zmqpipeline_up", (), 1.0 if status is not None else 0.0
    if status is None:
        return
    yield "zmqpipeline_run_info", (f"{status['run']:x}", status["state"]), 1.0
    yield "zmqpipeline_uptime_seconds", (), status["uptime_s"]
    yield "zmqpipeline_collector_connected", (), 1.0 if status["collector"]["connected"] else 0.0
    for tt, t in status["tasks"].items():
        yield "zmqpipeline_items_handed_out", (tt,), t["handed_out"]
        yield "zmqpipeline_items_collected", (tt,), t["collected"]
        yield "zmqpipeline_items_failed", (tt,), t["failed"]
        yield "zmqpipeline_items_retried", (tt,), t["retries"]
        yield "zmqpipeline_items_in_flight", (tt,), t["in_flight"]
        if t["size"] is not None:
            yield "zmqpipeline_task_size_items", (tt,), t["size"]
        if "backlog" in t:
            yield "zmqpipeline_stage_backlog_items", (tt,), t["backlog"]
        workers = [w for w in status["workers"] if w["task_type"] == tt]
        yield "zmqpipeline_workers_alive", (tt,), sum(1 for w in workers if not w["lost"])
        yield "zmqpipeline_workers_lost", (tt,), sum(1 for w in workers if w["lost"])
    for w in status["workers"]:
        labels = (w["id"], w["task_type"])
        yield "zmqpipeline_worker_items_collected", labels, w["done"]
        if not w["lost"]:
            yield "zmqpipeline_worker_items_in_flight", labels, w["in_flight"]
            yield "zmqpipeline_worker_heartbeat_age_seconds", labels, w["heartbeat_age_s"]
    for reason, count in sorted(status["dropped"].items()):
        yield "zmqpipeline_messages_dropped", (reason,), count


def _families(snapshot: dict[str, Any]) -> list[Any]:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    kinds = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}
    families: dict[str, Any] = {}
    for name, kind, text, labels in METRICS:
        if kind != "histogram":
            families[name] = kinds[kind](name, text, labels=list(labels))
    for name, labels, value in _values(snapshot):
        families[name].add_metric(list(labels), float(value))
    out = list(families.values())
    status = snapshot["status"]
    if status is not None and "latency" in status:
        lat = status["latency"]
        buckets = [("+Inf" if le is None else repr(float(le)), n) for le, n in lat["buckets"]]
        name, _, text, _ = next(m for m in METRICS if m[1] == "histogram")
        out.append(HistogramMetricFamily(name, text, buckets=buckets, sum_value=lat["sum_s"]))
    return out


class _SnapshotCollector:
    """A prometheus-client collector that reads the poller's latest snapshot."""

    def __init__(self, poller: StatusPoller) -> None:
        self.poller = poller

    def collect(self) -> Iterator[Any]:
        yield from _families(self.poller.snapshot)


def render_metrics(poller: StatusPoller) -> tuple[bytes, str]:
    """``(body, content type)`` of ``/metrics``; :class:`MetricsUnavailable` without
    ``prometheus-client``."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    except ImportError:
        raise MetricsUnavailable(
            "/metrics needs prometheus-client: pip install 'zmqpipeline[dashboard]'"
        ) from None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(poller))
    return generate_latest(registry), str(CONTENT_TYPE_LATEST)
