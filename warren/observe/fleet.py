"""The fleet-wide metrics, read from what every process already writes to Redis.

Served by the gateway's /metrics (job `warren-fleet` in deploy/prometheus/prometheus.yml):
invocations and errors per function (the workers' running totals, `p:stats:<f>`), throttles
of both kinds (`p:throttles`), executions in flight from the concurrency leases, the workers'
slots and heartbeat ages, and every mapping's lag and record counts. Queue depths need the
broker; the gateway adds them (gateway/metrics_api.py).
"""

from __future__ import annotations

import time
from typing import Any

import redis

from warren.keys import Keys, lease_function
from warren.observe.mappings import mapping_collector
from warren.observe.metrics import Counter, Gauge, Labels, Metric, Registry, Sample


def fleet_registry(client: redis.Redis[bytes], prefix: str, mappings: Any) -> Registry:
    """A registry whose every metric is read from Redis when rendered."""
    registry = Registry()
    keys = Keys(prefix)
    lock = registry.lock

    def family(kind: type[Counter], name: str, text: str, labels: tuple[str, ...]) -> Metric:
        return kind(name, text, labels, lock)

    invocations = family(Counter, "warren_invocations_total",
                         "Invocations that ran, fleet-wide (Lambda: Invocations).", ("function",))
    errors = family(Counter, "warren_errors_total",
                    "Invocations that failed, fleet-wide (Lambda: Errors).", ("function",))
    throttles = family(Counter, "warren_throttles_total",
                       "Throttles: sync 429s and async deferrals (Lambda: Throttles).",
                       ("function", "kind"))
    concurrent = family(Gauge, "warren_concurrent_executions",
                        "Leases in flight per function (Lambda: ConcurrentExecutions).",
                        ("function",))
    unreserved = family(Gauge, "warren_unreserved_concurrent_executions",
                        "Leases in flight of functions without reserved concurrency "
                        "(Lambda: UnreservedConcurrentExecutions).", ())
    slots = family(Gauge, "warren_worker_slots", "Slots per live worker.", ("worker", "pool"))
    busy = family(Gauge, "warren_worker_busy_slots", "Busy slots per live worker.",
                  ("worker", "pool"))
    warm = family(Gauge, "warren_worker_warm_sandboxes", "Warm sandboxes per live worker.",
                  ("worker", "pool"))
    age = family(Gauge, "warren_worker_heartbeat_age_seconds",
                 "Seconds since a live worker's last heartbeat.", ("worker", "pool"))

    def collect() -> list[tuple[Metric, list[Sample]]]:
        now = time.time()
        names = sorted(m.decode() for m in client.smembers(keys.functions))
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.stats(name))
        pipe.hgetall(keys.throttles)
        pipe.hgetall(keys.reservations)
        *stats, raw_throttles, reservations = pipe.execute()
        inv: list[Sample] = []
        err: list[Sample] = []
        thr: list[Sample] = []
        for name, fields in zip(names, stats, strict=True):
            inv.append((invocations.name, (name,), float(fields.get(b"invocations", 0))))
            err.append((errors.name, (name,), float(fields.get(b"errors", 0))))
        for field, value in raw_throttles.items():
            name, _, kind = field.decode().rpartition("|")
            thr.append((throttles.name, (name, kind), float(value)))
        leases: dict[Labels, float] = {}
        shared = 0
        lease_keys = [keys.account_leases, *(keys.function_leases(f.decode())
                                             for f in reservations)]
        for key in lease_keys:
            for member in client.zrangebyscore(key, now, "+inf"):
                fn: Labels = (lease_function(member),)
                leases[fn] = leases.get(fn, 0) + 1
                shared += key == keys.account_leases
        workers: dict[str, list[Sample]] = {"slots": [], "busy": [], "warm": [], "age": []}
        label: Labels
        for worker_key in client.scan_iter(keys.workers_pattern, count=1000):
            fields = {k.decode(): v.decode() for k, v in client.hgetall(worker_key).items()}
            if not fields:
                continue
            label = (fields.get("id", ""), fields.get("pool", ""))
            workers["slots"].append((slots.name, label, float(fields.get("slots", 0))))
            workers["busy"].append((busy.name, label, float(fields.get("busy", 0))))
            workers["warm"].append((warm.name, label, float(fields.get("warm", 0))))
            beat = float(fields.get("last_heartbeat", now))
            workers["age"].append((age.name, label, round(now - beat, 3)))
        return [
            (invocations, inv), (errors, err), (throttles, thr),
            (concurrent, [(concurrent.name, k, v) for k, v in leases.items()]),
            (unreserved, [(unreserved.name, (), float(shared))]),
            (slots, workers["slots"]), (busy, workers["busy"]), (warm, workers["warm"]),
            (age, workers["age"]),
        ]

    registry.collect(collect)
    mapping_collector(registry, mappings, lambda: [m.uuid for m in mappings.list_mappings()])
    return registry
