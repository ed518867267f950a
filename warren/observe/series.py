"""Time series for the console's charts, from the per-minute and per-hour usage hashes.

The last hour comes minute by minute (`p:usage:m:<minute>`, `p:throttles:m:<minute>`, kept two
days); the last day hour by hour (`p:usage:<hour>`, whose histogram also gives p50/p99).
"""

from __future__ import annotations

import time
from typing import Any

import redis

from warren.keys import Keys
from warren.store.usage import HOUR_S, fold
from warren.usage import percentile_ms


def _num(fields: dict[bytes, bytes], name: str) -> int:
    return int(fields.get(name.encode(), 0))


def minute_series(
    client: redis.Redis[bytes], prefix: str, function: str, minutes: int = 60,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """One point per minute, oldest first: invocations, errors, throttles, mean duration."""
    keys = Keys(prefix)
    last = int((time.time() if now is None else now) // 60)
    span = range(last - minutes + 1, last + 1)
    pipe = client.pipeline(transaction=False)
    for minute in span:
        pipe.hgetall(keys.usage_minute(minute))
        pipe.hgetall(keys.throttles_minute(minute))
    replies = pipe.execute()
    points = []
    for index, minute in enumerate(span):
        usage, throttled = replies[2 * index], replies[2 * index + 1]
        requests = _num(usage, f"{function}|req")
        points.append({
            "t": minute * 60,
            "invocations": requests,
            "errors": _num(usage, f"{function}|err"),
            "throttles": _num(throttled, f"{function}|sync") + _num(throttled, f"{function}|async"),
            "duration_ms": round(_num(usage, f"{function}|ms") / requests, 2) if requests else None,
        })
    return points


def hour_series(
    client: redis.Redis[bytes], prefix: str, function: str, hours: int = 24,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """One point per hour, oldest first: invocations, errors, throttles, p50 and p99 duration."""
    keys = Keys(prefix)
    now = time.time() if now is None else now
    last = int(now // HOUR_S)
    span = range(last - hours + 1, last + 1)
    pipe = client.pipeline(transaction=False)
    for hour in span:
        pipe.hgetall(keys.usage(hour))
    for hour in span:
        for minute in range(hour * 60, hour * 60 + 60):
            pipe.hmget(keys.throttles_minute(minute), [f"{function}|sync", f"{function}|async"])
    replies = pipe.execute()
    usage_hashes, throttle_rows = replies[: len(span)], replies[len(span):]
    points = []
    for index, hour in enumerate(span):
        rows = fold([usage_hashes[index]], function)
        buckets: dict[int, int] = {}
        requests = errors = 0
        for row in rows:
            requests += row.usage.requests
            errors += row.usage.errors
            for bucket, count in row.usage.buckets.items():
                buckets[bucket] = buckets.get(bucket, 0) + count
        throttled = sum(
            int(value or 0)
            for pair in throttle_rows[index * 60 : index * 60 + 60]
            for value in pair
        )
        p50, p99 = percentile_ms(buckets, 0.5), percentile_ms(buckets, 0.99)
        points.append({
            "t": hour * HOUR_S,
            "invocations": requests,
            "errors": errors,
            "throttles": throttled,
            "duration_ms": None if p50 is None else round(p50, 2),
            "duration_p99_ms": None if p99 is None else round(p99, 2),
        })
    return points
