"""The fleet's live workers, as their heartbeats (`p:worker:<id>` hashes with a TTL) show them."""

from __future__ import annotations

from typing import Any

import redis

from warren.keys import Keys


def live_workers(client: redis.Redis[bytes], prefix: str, pool: str | None = None) -> list[str]:
    """Ids of workers whose heartbeat has not expired (of one pool, if given).

    A SCAN over the keyspace: for status and for a sync call that has waited seconds already,
    never for a hot path.
    """
    found = []
    for key in client.scan_iter(Keys(prefix).workers_pattern, count=1000):
        fields: dict[Any, Any] = client.hmget(key, ["id", "pool"])  # type: ignore[assignment]
        ident, worker_pool = fields[0], fields[1]
        if ident is None:
            continue  # expired between SCAN and HMGET
        if pool is None or (worker_pool or b"").decode() == pool:
            found.append(ident.decode())
    return found
