"""A Redis counter the async benchmark tasks bump, with one client per worker process."""

from __future__ import annotations

import os

import redis


class Counter:
    """INCR one Redis key; the client is opened lazily in each process.

    Celery's prefork pool forks its children after the app (and these tasks) exist, so a
    client opened in the parent would share one socket across processes; keying the client
    by PID gives every process its own connection.
    """

    def __init__(self, redis_url: str, key: str) -> None:
        self.redis_url = redis_url
        self.key = key
        self._client: redis.Redis[bytes] | None = None
        self._pid = 0

    def incr(self) -> int:
        if self._client is None or self._pid != os.getpid():
            self._client = redis.Redis.from_url(self.redis_url)
            self._pid = os.getpid()
        return int(self._client.incr(self.key))
