"""A small Prometheus registry: counters, gauges and histograms with labels, in text format 0.0.4.

Why not prometheus_client: each process needs a dozen metrics, and the worker's hot path needs
a batch of observations under one lock (one chunk finished = one `observe` call), which its
per-metric locks do not give; the text format is forty lines. No dependency is added.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

Labels = tuple[str, ...]
Sample = tuple[str, Labels, float]  # (metric name with suffix, label values, value)

DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0,
)


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str], lock: threading.Lock):
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self.lock = lock

    def samples(self) -> list[Sample]:
        raise NotImplementedError


class Counter(Metric):
    """A monotonic count; `values` may be updated directly by a holder of `lock`."""

    kind = "counter"

    def __init__(
        self, name: str, help_text: str, labelnames: Sequence[str], lock: threading.Lock
    ) -> None:
        super().__init__(name, help_text, labelnames, lock)
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels = (), n: float = 1) -> None:
        with self.lock:
            self.values[labels] = self.values.get(labels, 0) + n

    def samples(self) -> list[Sample]:
        return [(self.name, labels, v) for labels, v in self.values.items()]


class Gauge(Counter):
    kind = "gauge"

    def set(self, labels: Labels, value: float) -> None:
        with self.lock:
            self.values[labels] = value


class Histogram(Metric):
    """Bucket counts per label set; cumulative only when rendered."""

    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, labelnames: Sequence[str], lock: threading.Lock,
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labelnames, lock)
        self.buckets = tuple(buckets)
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = {}

    def observe_locked(self, labels: Labels, value: float) -> None:
        """Record one value; the caller holds `lock` (a batch takes it once)."""
        counts = self.counts.get(labels)
        if counts is None:
            counts = self.counts[labels] = [0] * (len(self.buckets) + 1)
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[labels] = self.sums.get(labels, 0.0) + value

    def observe(self, labels: Labels, value: float) -> None:
        with self.lock:
            self.observe_locked(labels, value)

    def samples(self) -> list[Sample]:
        out: list[Sample] = []
        for labels, counts in self.counts.items():
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                out.append((f"{self.name}_bucket", (*labels, _number(bound)), running))
            out.append((f"{self.name}_sum", labels, self.sums.get(labels, 0.0)))
            out.append((f"{self.name}_count", labels, running))
        return out


Collector = Callable[[], Iterable[tuple[Metric, list[Sample]]]]


_M = TypeVar("_M", bound=Metric)


class Registry:
    """The metrics of one process, plus collectors that read state when scraped."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._metrics: list[Metric] = []
        self._collectors: list[Collector] = []

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help_text, labelnames, self.lock))

    def gauge(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help_text, labelnames, self.lock))

    def histogram(
        self, name: str, help_text: str, labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> Histogram:
        return self._add(Histogram(name, help_text, labelnames, self.lock, buckets=buckets))

    def computed(
        self, name: str, help_text: str, labelnames: Sequence[str],
        values: Callable[[], dict[Labels, float]], kind: str = "gauge",
    ) -> None:
        """A metric whose values `values()` reads at each scrape (state kept elsewhere)."""
        metric = Gauge(name, help_text, labelnames, self.lock)
        metric.kind = kind
        self.collect(lambda: [(metric, [(name, k, v) for k, v in values().items()])])

    def collect(self, collector: Collector) -> None:
        """Add a function called at each scrape; it returns (metric, samples) pairs."""
        self._collectors.append(collector)

    def _add(self, metric: _M) -> _M:
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        with self.lock:
            families = [(m, m.samples()) for m in self._metrics]
        for collector in self._collectors:
            families.extend(collector())
        return render(families)


def render(families: Iterable[tuple[Metric, list[Sample]]]) -> str:
    """The Prometheus text exposition of (metric, samples) pairs."""
    lines: list[str] = []
    for metric, samples in families:
        lines.append(f"# HELP {metric.name} {metric.help}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        names = metric.labelnames + (("le",) if metric.kind == "histogram" else ())
        for name, values, value in samples:
            if values:
                pairs = ",".join(
                    f'{key}="{_escape(val)}"' for key, val in zip(names, values, strict=False)
                )
                lines.append(f"{name}{{{pairs}}} {_number(value)}")
            else:
                lines.append(f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))

