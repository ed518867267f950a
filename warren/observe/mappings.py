"""Per-mapping metrics read from the mapping store at scrape time: lag, records, batches.

The batching loop already flushes its counters to `p:mapping:<uuid>:stats` every few seconds
(store/mappings.py); reading them when scraped costs the loop nothing. The counters there are
the mapping's whole life, across pollers, so they stay monotonic when a mapping moves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from warren.errors import WarrenError
from warren.observe.metrics import Counter, Gauge, Metric, Registry, Sample

STAGES = {
    "read": "Records read from the source (Lambda: PolledEventCount).",
    "filtered": "Records dropped by the filter criteria (Lambda: FilteredOutEventCount).",
    "invoked": "Records handed to the function (Lambda: InvokedEventCount).",
    "succeeded": "Records whose batch the function processed.",
    "failed": "Records given up after their retries (Lambda: FailedInvokeEventCount).",
    "destination": "Given-up records sent to the on-failure destination.",
    "batches": "Batches invoked.",
}


def mapping_collector(
    registry: Registry, store: Any, mapping_ids: Callable[[], Iterable[str]]
) -> None:
    """Add the metrics of the mappings `mapping_ids()` names (a poller: those it owns)."""
    labels = ("mapping", "function")
    age = Gauge(
        "warren_iterator_age_seconds",
        "Age of the newest record read when the last batch ran (Lambda: IteratorAge).",
        labels, registry.lock)
    size = Gauge("warren_mapping_batch_size", "Mean records per invoked batch.", labels,
                 registry.lock)
    counters = {
        stage: Counter(f"warren_mapping_{'records_' if stage != 'batches' else ''}{stage}_total",
                       text, labels, registry.lock)
        for stage, text in STAGES.items()
    }

    def collect() -> list[tuple[Metric, list[Sample]]]:
        out: dict[str, list[Sample]] = {name: [] for name in (*counters, "age", "size")}
        for mapping_id in mapping_ids():
            try:
                spec = store.get(mapping_id)
                stats = store.stats(mapping_id)
            except WarrenError:
                continue  # deleted meanwhile, or Redis away: the scrape shows the rest
            key = (mapping_id, spec.function_name)
            for stage, counter in counters.items():
                out[stage].append((counter.name, key, float(stats.get(stage, 0))))
            if stats.get("lag_s") is not None:
                out["age"].append((age.name, key, float(stats["lag_s"])))
            if stats.get("batches"):
                out["size"].append((size.name, key, stats["invoked"] / stats["batches"]))
        families: list[tuple[Metric, list[Sample]]] = [
            (counter, out[stage]) for stage, counter in counters.items()
        ]
        return [*families, (age, out["age"]), (size, out["size"])]

    registry.collect(collect)
