"""Hand-out-to-ACK latency as a status snapshot shows it: percentiles of the latest
samples and a cumulative histogram, built when a status is read (nothing per item).

The scheduler keeps the latest 10 000 latencies (``Scheduler.latencies``) and counts the
items it has collected; the histogram adds, at each read, the samples of the items
collected since the previous read. Were more collected in between than the window holds,
the window's buckets are scaled up to that count (the sum likewise).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

__all__ = ["LATENCY_BUCKETS_S", "LatencyHistogram", "percentiles_ms"]

#: The histogram's upper bounds, in seconds (Prometheus' ``le``); +Inf comes last.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def percentiles_ms(samples: Sequence[float]) -> dict[str, float]:
    """``p50``, ``p90``, ``p99`` and ``max`` in milliseconds; empty with no sample."""
    if not samples:
        return {}
    ordered = sorted(samples)
    last = len(ordered) - 1
    return {
        name: ordered[min(last, int(fraction * len(ordered)))] * 1000
        for name, fraction in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0))
    }


class LatencyHistogram:
    """Cumulative bucket counts of the latencies of the items collected since the first
    read (the distributor's start, for a dashboard open from the start)."""

    def __init__(self) -> None:
        self.counts = [0.0] * (len(LATENCY_BUCKETS_S) + 1)  # per bucket, not cumulative
        self.total = 0.0
        self.sum_s = 0.0
        self._seen: int | None = None  # items collected as of the previous read

    def update(self, window: Sequence[float], collected: int) -> None:
        """Count the items collected since the last read, from the tail of ``window``."""
        if self._seen is None:
            self._seen = max(0, collected - len(window))  # a resumed run's earlier items
        new = collected - self._seen
        self._seen = collected
        if new <= 0 or not window:
            return
        tail = list(window)[-new:] if new < len(window) else list(window)
        scale = new / len(tail)
        for value in tail:
            self.counts[bisect_left(LATENCY_BUCKETS_S, value)] += scale
            self.sum_s += value * scale
        self.total += new

    def snapshot(self) -> dict[str, Any]:
        """``{"buckets": [[le, cumulative], ...], "count", "sum_s"}``, ``le`` ``None`` for +Inf."""
        running = 0.0
        buckets: list[list[float | None]] = []
        for bound, count in zip((*LATENCY_BUCKETS_S, None), self.counts, strict=True):
            running += count
            buckets.append([bound, round(running)])
        return {"buckets": buckets, "count": round(self.total), "sum_s": self.sum_s}
