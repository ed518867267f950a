"""How many times each record of a mapping was tried, kept in Redis across restarts (a hash
per mapping) and in memory for the runner's checks."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from warren.source import SourceRecord


class Attempts:
    def __init__(self, client: redis.Redis[bytes], key: str) -> None:
        self._redis, self._key = client, key
        self._counts: dict[str, int] = {}

    def load(self) -> None:
        raw = self._redis.hgetall(self._key)
        self._counts = {k.decode(): int(v) for k, v in raw.items()}

    def get(self, record_id: str, default: int = 0) -> int:
        return self._counts.get(record_id, default)

    def spend(self, records: Sequence[SourceRecord]) -> int:
        """One more attempt for each record; returns the most any of them has had."""
        pipe = self._redis.pipeline(transaction=False)
        for r in records:
            self._counts[r.id] = self._counts.get(r.id, 0) + 1
            pipe.hincrby(self._key, r.id, 1)
        pipe.execute()
        return max(self._counts[r.id] for r in records)

    def forget(self, records: Sequence[SourceRecord]) -> None:
        if not self._counts:
            return
        ids = [r.id for r in records if r.id in self._counts]
        if ids:
            for i in ids:
                del self._counts[i]
            self._redis.hdel(self._key, *ids)
