"""A sync call's watch on its pool: fail in seconds when no worker serves it, not at timeout.

A call that has had no reply for `grace_s` looks at the worker heartbeats of its pool, and again
every `grace_s`; when none is alive it stops waiting. The hot path pays nothing: a reply within
the grace never looks.
"""

from __future__ import annotations

import time
from typing import Final

import redis

from warren.errors import StoreUnavailable
from warren.store.redis import redis_errors
from warren.store.workers import live_workers

NO_WORKER: Final = b"\0no-live-worker"  # a reply no worker can send (results are msgpack)
GRACE_S = 2.0


class WorkerWatch:
    def __init__(
        self, client: redis.Redis[bytes], prefix: str, pool: str, grace_s: float = GRACE_S
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._pool = pool
        self._grace_s = grace_s
        self._next = time.monotonic() + grace_s

    def gone(self) -> bool:
        """True when the pool has no live worker (checked once per grace period)."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self._grace_s
        try:
            with redis_errors("worker heartbeats", self._redis):
                return not live_workers(self._redis, self._prefix, self._pool)
        except StoreUnavailable:
            return False  # cannot tell: keep waiting for the reply
