"""The worker's metrics: invocations, errors, duration and init per function and version, and
what its slots are doing.

The per-invocation counts ride on the usage meter (store/usage.py): when a chunk finishes, the
meter hands its runs to `observe`, which takes one lock for the whole chunk. Running
invocations per function are counted around each run by `MeteredExecutor`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from warren.invocation import Invocation
from warren.observe.metrics import Labels, Registry
from warren.store.usage import Metered
from workers.executor import Executor, Run


class WorkerMetrics:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        labels = ("function", "version")
        self.invocations = registry.counter(
            "warren_invocations_total", "Invocations that ran a handler (Lambda: Invocations).",
            labels)
        self.errors = registry.counter(
            "warren_errors_total",
            "Invocations that ended in a function error, timeout or crash (Lambda: Errors).",
            labels)
        self.duration = registry.histogram(
            "warren_duration_seconds", "Handler run time (Lambda: Duration).", labels)
        self.init = registry.histogram(
            "warren_init_duration_seconds",
            "Init phase of a new sandbox; its count is the cold starts (Lambda: InitDuration).",
            labels)
        self.concurrent = registry.gauge(
            "warren_concurrent_executions",
            "Invocations running now on this worker (Lambda: ConcurrentExecutions).",
            ("function",))

    def observe(self, runs: Iterable[Metered]) -> None:
        """Count one finished chunk's runs (the usage meter's tap)."""
        invocations, errors = self.invocations.values, self.errors.values
        duration, bounds = self.duration, [b * 1000 for b in self.duration.buckets]
        with self.registry.lock:
            key: tuple[str, ...] = ()
            counts: list[int] = []
            for run in runs:
                if key != (run.function, run.version):  # chunks are mostly of one version
                    key = (run.function, run.version)
                    counts = duration.counts.get(key) or duration.counts.setdefault(
                        key, [0] * (len(bounds) + 1))
                counts[bisect_left(bounds, run.duration_ms)] += 1
                duration.sums[key] = duration.sums.get(key, 0.0) + run.duration_ms / 1000
                invocations[key] = invocations.get(key, 0) + 1
                if run.error:
                    errors[key] = errors.get(key, 0) + 1
                if run.init_ms is not None:
                    self.init.observe_locked(key, run.init_ms / 1000)

    def slots_collector(self, status: Callable[[], dict[str, Any]]) -> None:
        """Slots, busy slots and warm sandboxes, read from the worker at each scrape."""
        for field, name, text in (
            ("slots", "warren_worker_slots", "Slots of this worker."),
            ("busy", "warren_worker_busy_slots", "Slots running an invocation now."),
            ("warm", "warren_worker_warm_sandboxes", "Warm sandboxes this worker keeps."),
        ):
            self.registry.computed(name, text, (), _reader(status, field))


class MeteredExecutor(Executor):
    """An Executor that counts the invocations it is running, per function."""

    metrics: WorkerMetrics

    def run(self, inv: Invocation) -> Run:
        gauge = self.metrics.concurrent
        key = (inv.spec.name,)
        with gauge.lock:
            gauge.values[key] = gauge.values.get(key, 0) + 1
        try:
            return super().run(inv)
        finally:
            with gauge.lock:
                gauge.values[key] -= 1


def _reader(status: Callable[[], dict[str, Any]], field: str) -> Callable[[], dict[Labels, float]]:
    return lambda: {(): float(status()[field])}
