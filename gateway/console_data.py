"""What the console's JSON endpoints read: the registry, the fleet's Redis state, the usage.

Plain functions of (gateway, query parameters) run on a worker thread; each returns a dict.
"""

from __future__ import annotations

import time
from typing import Any

from warren.errors import NotFound
from warren.keys import Keys, lease_function
from warren.observe.series import hour_series, minute_series
from warren.pricing import Prices, busy_seconds, cost_report
from warren.store.logs import LogStore
from warren.store.throttles import ThrottleStore
from warren.store.usage import UsageStore, usage_document
from warren.usage import Usage

SINCE = {"1h": 3600, "1d": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


def overview(gw: Any, _params: dict[str, str]) -> dict[str, Any]:
    """Functions (configuration, versions, aliases, counters), workers, mappings."""
    client, keys, registry = gw.redis, Keys(gw.settings.prefix), gw.registry
    now = time.time()
    reservations = registry.reservations()
    in_flight: dict[str, int] = {}
    for key in [keys.account_leases, *(keys.function_leases(f) for f in reservations)]:
        for member in client.zrangebyscore(key, now, "+inf"):
            name = lease_function(member)
            in_flight[name] = in_flight.get(name, 0) + 1
    throttles = ThrottleStore(client, gw.settings.prefix).read()
    functions = []
    for spec in registry.list_functions():
        stats = {k.decode(): int(v) for k, v in client.hgetall(keys.stats(spec.name)).items()}
        functions.append({
            **spec.to_dict(),
            "arn": spec.arn,
            "reserved_concurrency": reservations.get(spec.name),
            "versions": [v.version for v in registry.list_versions(spec.name)],
            "aliases": [a.to_dict() for a in registry.list_aliases(spec.name)],
            "in_flight": in_flight.get(spec.name, 0),
            "invocations": stats.get("invocations", 0),
            "errors": stats.get("errors", 0),
            "throttles": sum(n for (f, _k), n in throttles.items() if f == spec.name),
        })
    workers = []
    for key in sorted(client.scan_iter(keys.workers_pattern, count=1000)):
        fields = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
        if fields:
            last = float(fields.get("last_heartbeat", now))
            workers.append({
                "id": fields.get("id"), "host": fields.get("host"), "pool": fields.get("pool"),
                "slots": int(fields.get("slots", 0)), "busy": int(fields.get("busy", 0)),
                "warm": int(fields.get("warm", 0)), "completed": int(fields.get("completed", 0)),
                "heartbeat_age_s": round(now - last, 1),
            })
    return {
        "generated_at": now,
        "functions": functions,
        "workers": workers,
        "mappings": gw.mappings.summaries(),
    }


def series(gw: Any, params: dict[str, str]) -> dict[str, Any]:
    """?function=F&range=hour|day: the points of one function's charts."""
    function = params.get("function", "")
    if not gw.redis.sismember(Keys(gw.settings.prefix).functions, function):
        raise NotFoundError(f"no function {function!r}")
    span = params.get("range", "hour")
    if span == "hour":
        points = minute_series(gw.redis, gw.settings.prefix, function)
    elif span == "day":
        points = hour_series(gw.redis, gw.settings.prefix, function)
    else:
        raise ValueError("range is hour or day")
    return {"function": function, "range": span, "points": points}


def logs(gw: Any, params: dict[str, str]) -> dict[str, Any]:
    """?function=F&limit=N: the latest invocations' START…REPORT blocks, newest first."""
    function = params.get("function", "")
    try:
        gw.registry.get_function(function)
    except NotFound as exc:
        raise NotFoundError(str(exc)) from None
    limit = max(1, min(100, int(params.get("limit", "20"))))
    entries = LogStore(gw.redis, gw.settings.prefix).read(function, count=limit)
    return {"function": function, "invocations": [
        {"request_id": e.request_id, "version": e.version, "time": e.timestamp, "log": e.text}
        for e in reversed(entries)
    ]}


def usage(gw: Any, params: dict[str, str]) -> dict[str, Any]:
    """?since=1h|1d|7d|30d&arch=x86_64|arm64: `warren usage` and `warren cost` side by side."""
    since = params.get("since", "30d")
    if since not in SINCE:
        raise ValueError(f"since is one of {', '.join(SINCE)}")
    window = SINCE[since]
    rows = UsageStore(gw.redis, gw.settings.prefix).read(window)
    per_function: dict[str, Usage] = {}
    for row in rows:
        per_function.setdefault(row.function, Usage()).merge(row.usage)
    cost = cost_report(per_function, Prices.load(), arch=params.get("arch", "x86_64"),
                       free_tier=params.get("free_tier", "1") != "0", window_s=window)
    cost["fleet"] = {"busy_slot_seconds": round(sum(busy_seconds(u)
                                                    for u in per_function.values()), 3)}
    return {"usage": usage_document(rows, since, window), "cost": cost}


class NotFoundError(LookupError):
    pass
