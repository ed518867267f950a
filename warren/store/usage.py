"""Metered usage in Redis: per function, version and hour, what Lambda would bill, kept a while.

One hash per hour, `p:usage:<hour>` (hour = unix time // 3600), written by the worker in the
Redis round trip that finishes a chunk. Its fields, for a function `f` at version `v`:

    f|v|d<i>    invocations whose duration fell in histogram bucket i (see `warren.usage`);
                their sum is the request count, so requests cost no field of their own
    f|v|mbms    billed duration x configured memory, in MB-milliseconds (GB-s = / 1024000)
    f|v|imbms   billed init duration x configured memory (Lambda bills INIT too), MB-ms
    f|v|cold    cold starts (invocations that ran a sandbox's init)
    f|v|err     invocations that ended in an error (function error, timeout, crash)

Integers only (HINCRBY), so the hash is exact however many workers add to it. The key expires
`retention_s` after its hour ends.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from math import ceil, log2
from typing import Any, NamedTuple

import redis

from warren.keys import Keys
from warren.usage import PER_DOUBLING, Usage

HOUR_S = 3600
MINUTE_KEEP_S = 2 * 86400  # the per-minute chart counts: two days
DEFAULT_RETENTION_DAYS = 90.0  # as settings.DEFAULT_USAGE_RETENTION_DAYS


class Metered(NamedTuple):
    """What one sandbox run adds to the meter."""

    function: str
    version: str
    memory_mb: int
    duration_ms: float
    init_ms: float | None
    error: bool


class UsageMeter:
    """Turns finished runs into raw HINCRBY commands for `execute_raw` (one round trip)."""

    def __init__(
        self,
        prefix: str,
        retention_s: float = DEFAULT_RETENTION_DAYS * 86400,
        tap: Callable[[list[Metered]], None] | None = None,
    ) -> None:
        self._keys = Keys(prefix)
        self.retention_s = retention_s
        self.tap = tap  # also handed each chunk's runs (the worker's /metrics counters)
        self._expiring_hour = -1  # the hour whose key this process has set an expiry on
        self._expiring_minute = -1

    def commands(
        self, runs: Iterable[Metered], now: float | None = None
    ) -> list[tuple[str | int, ...]]:
        now = time.time() if now is None else now
        hour = int(now // HOUR_S)
        key = self._keys.usage(hour)
        runs = list(runs)
        if self.tap is not None:
            self.tap(runs)
        # Summed per version first: a chunk of 100 runs of one function is a handful of fields.
        groups: dict[tuple[str, str], list[Any]] = {}
        for run in runs:
            group = groups.get((run.function, run.version))
            if group is None:
                group = groups[(run.function, run.version)] = [0, 0, 0, 0, defaultdict(int), 0]
            duration = run.duration_ms
            group[4][0 if duration <= 1.0 else ceil(PER_DOUBLING * log2(duration))] += 1
            whole = int(duration)
            billed = whole + (whole != duration) or 1  # billed_ms, inline
            group[0] += billed * run.memory_mb
            group[5] += billed
            if run.init_ms is not None:
                group[1] += billed_ms(run.init_ms) * run.memory_mb
                group[2] += 1
            if run.error:
                group[3] += 1
        commands: list[tuple[str | int, ...]] = []
        minute = int(now // 60)
        mkey = self._keys.usage_minute(minute)
        for (function, version), (mb_ms, init_mb_ms, cold, errors, buckets, ms) in groups.items():
            # The charts' minute: requests, errors and billed milliseconds per function.
            commands += [("HINCRBY", mkey, f"{function}|req", sum(buckets.values())),
                         ("HINCRBY", mkey, f"{function}|ms", ms)]
            if errors:
                commands.append(("HINCRBY", mkey, f"{function}|err", errors))
            stem = f"{function}|{version}|"
            commands += [("HINCRBY", key, f"{stem}d{i}", n) for i, n in buckets.items()]
            commands.append(("HINCRBY", key, stem + "mbms", mb_ms))
            if cold:
                commands += [("HINCRBY", key, stem + "imbms", init_mb_ms),
                             ("HINCRBY", key, stem + "cold", cold)]
            if errors:
                commands.append(("HINCRBY", key, stem + "err", errors))
        if commands and hour != self._expiring_hour:
            # Once per hour per process: the key lives its hour plus the retention.
            commands.append(("EXPIREAT", key, int((hour + 1) * HOUR_S + self.retention_s)))
            self._expiring_hour = hour
        if commands and minute != self._expiring_minute:
            commands.append(("EXPIREAT", mkey, (minute + 1) * 60 + MINUTE_KEEP_S))
            self._expiring_minute = minute
        return commands


def billed_ms(duration_ms: float) -> int:
    """Lambda bills per started millisecond, at least one."""
    whole = int(duration_ms)
    return max(1, whole if whole == duration_ms else whole + 1)


@dataclass(frozen=True)
class UsageRow:
    function: str
    version: str
    usage: Usage


class UsageStore:
    """Reads the hourly hashes back and adds them up per function and version."""

    def __init__(self, client: redis.Redis[bytes], prefix: str = "warren") -> None:
        self._redis = client
        self._keys = Keys(prefix)

    def read(
        self, since_s: float, function: str | None = None, now: float | None = None
    ) -> list[UsageRow]:
        """Usage of the hours that overlap the last `since_s` seconds (whole hours)."""
        now = time.time() if now is None else now
        last = int(now // HOUR_S)
        first = int((now - since_s) // HOUR_S)
        pipe = self._redis.pipeline(transaction=False)
        for hour in range(first, last + 1):
            pipe.hgetall(self._keys.usage(hour))
        return fold(pipe.execute(), function)

    def hourly(
        self, hours: int, function: str | None = None, now: float | None = None
    ) -> list[tuple[int, list[UsageRow]]]:
        """The last `hours` hours one by one (oldest first): (hour start, rows) each."""
        now = time.time() if now is None else now
        last = int(now // HOUR_S)
        span = range(last - hours + 1, last + 1)
        pipe = self._redis.pipeline(transaction=False)
        for hour in span:
            pipe.hgetall(self._keys.usage(hour))
        return [
            (hour * HOUR_S, fold([fields], function))
            for hour, fields in zip(span, pipe.execute(), strict=True)
        ]


def fold(hashes: Sequence[dict[Any, Any]], function: str | None = None) -> list[UsageRow]:
    """Add up hourly hashes into one Usage per (function, version), sorted by name."""
    totals: dict[tuple[str, str], Usage] = {}
    for fields in hashes:
        for raw_field, raw_value in fields.items():
            text = raw_field.decode() if isinstance(raw_field, bytes) else str(raw_field)
            name, _, rest = text.partition("|")
            version, _, kind = rest.rpartition("|")
            if not kind or (function is not None and name != function):
                continue
            usage = totals.setdefault((name, version), Usage())
            usage.add(kind, int(raw_value))
    return [UsageRow(f, v, u) for (f, v), u in sorted(totals.items())]


def usage_document(rows: list[UsageRow], since: str, since_s: float) -> dict[str, Any]:
    """The `warren usage --output json` document (docs/operate.md lists its keys)."""
    total = Usage()
    functions: dict[str, dict[str, Any]] = {}
    per_function: dict[str, Usage] = {}
    for row in rows:
        total.merge(row.usage)
        per_function.setdefault(row.function, Usage()).merge(row.usage)
        entry = functions.setdefault(row.function, {"versions": {}})
        entry["versions"][row.version] = row.usage.summary()
    for name, usage in per_function.items():
        functions[name] = {**usage.summary(), "versions": functions[name]["versions"]}
    return {
        "since": since,
        "window_days": round(since_s / 86400, 4),
        **total.summary(),
        "functions": functions,
    }
