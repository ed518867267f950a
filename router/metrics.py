"""The router's metrics: async events received, throttled (deferred), dropped, and their age.

Counted per routed batch (hundreds of invocations), so the cost is a few dict updates per
batch. Deferrals are also added to the fleet's throttle hash in Redis (store/throttles.py),
which only happens when the router is throttling, the path that waits anyway.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from router.destination import DestinationSet
from warren.errors import StoreUnavailable, WarrenError
from warren.invocation import Invocation
from warren.observe.metrics import Registry
from warren.settings import Settings
from warren.store.redis import redis_errors
from warren.store.throttles import ThrottleStore

AGE_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 30, 60, 300, 900, 3600, 6 * 3600, 21600)


class RouterMetrics:
    def __init__(self, registry: Registry, throttles: ThrottleStore | None = None) -> None:
        self.registry = registry
        self.throttles = throttles
        self.received = registry.counter(
            "warren_async_events_received_total",
            "Async (Event) invocations the router took off the async queue.", ("function",))
        self.throttled = registry.counter(
            "warren_throttles_total",
            "Invocations refused over the concurrency limit (async: deferred and retried).",
            ("function", "kind"))
        self.dropped = registry.counter(
            "warren_async_events_dropped_total",
            "Async events given up without running (too old, or reserved concurrency 0).",
            ("function", "reason"))
        self.age = registry.histogram(
            "warren_async_event_age_seconds",
            "Time from an async event's acceptance to the router admitting it.",
            ("function",), buckets=AGE_BUCKETS)
        self.dead_letters = registry.counter(
            "warren_dead_letters_total",
            "Messages the router could not decode, sent to the dead-letter queue.", ("queue",))

    def routed(
        self, by_function: Mapping[str, Sequence[Invocation]], deferred: Sequence[Invocation]
    ) -> None:
        now = time.time()
        throttled: dict[str, int] = {}
        for inv in deferred:
            throttled[inv.spec.name] = throttled.get(inv.spec.name, 0) + 1
        with self.registry.lock:
            for name, invs in by_function.items():
                key = (name,)
                self.received.values[key] = self.received.values.get(key, 0) + len(invs)
                for inv in invs:
                    if inv.attempt == 1:
                        self.age.observe_locked(key, max(0.0, now - inv.accepted_at))
            for name, n in throttled.items():
                key2 = (name, "async")
                self.throttled.values[key2] = self.throttled.values.get(key2, 0) + n
        if throttled and self.throttles is not None:
            try:
                with redis_errors("counting throttles"):
                    for name, n in throttled.items():
                        self.throttles.add(name, "async", n)
            except StoreUnavailable:
                pass  # a count lost is better than a batch redelivered

    def gave_up(self, inv: Invocation, condition: str) -> None:
        self.dropped.inc((inv.spec.name, condition))

    def dead_lettered(self, queue: str) -> None:
        self.dead_letters.inc((queue,))


class CountedDestinations(DestinationSet):
    """A DestinationSet that counts records delivered and delivery failures per function
    (Lambda: DestinationDeliveryFailures). A failure still raises: the caller requeues."""

    def __init__(
        self, settings: Settings, redis_client: Any, registry: Registry
    ) -> None:
        super().__init__(settings, redis_client)
        self.failures = registry.counter(
            "warren_destination_delivery_failures_total",
            "Destination records that could not be delivered (Lambda: "
            "DestinationDeliveryFailures); the invocation or batch is retried.", ("function",))
        self.delivered = registry.counter(
            "warren_destination_records_total",
            "Records delivered to on-success / on-failure destinations.", ("function",))

    def send(self, uri: str, record: dict[str, Any]) -> None:
        label = (_function_of(record),)
        try:
            super().send(uri, record)
        except WarrenError:
            self.failures.inc(label)
            raise
        self.delivered.inc(label)


def _function_of(record: dict[str, Any]) -> str:
    """The function a destination record is about, from its functionArn (name[:qualifier])."""
    arn = str(record.get("requestContext", {}).get("functionArn", ""))
    parts = arn.split(":")
    return parts[6] if len(parts) > 6 else arn
