"""Throttle counts per function in one Redis hash: sync 429s at the caller, async deferrals.

Written only when a throttle happens (the path that waits anyway), read by the fleet-wide
metrics (`warren_throttles_total{kind="sync"|"async"}`) and the console.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from warren.keys import Keys
from warren.store.usage import MINUTE_KEEP_S

KINDS = ("sync", "async")


class ThrottleStore:
    def __init__(self, client: redis.Redis[bytes], prefix: str = "warren") -> None:
        self._redis = client
        self._keys = Keys(prefix)
        self.key = self._keys.throttles

    def command(self, function: str, kind: str, n: int = 1) -> tuple[Any, ...]:
        """The HINCRBY as a raw command, to ride on a round trip that happens anyway."""
        return ("HINCRBY", self.key, f"{function}|{kind}", n)

    def add(self, function: str, kind: str, n: int = 1, now: float | None = None) -> None:
        """Count `n` throttles, in the running total and in this minute's (the charts')."""
        minute = int((time.time() if now is None else now) // 60)
        minute_key = self._keys.throttles_minute(minute)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hincrby(self.key, f"{function}|{kind}", n)
        pipe.hincrby(minute_key, f"{function}|{kind}", n)
        pipe.expireat(minute_key, (minute + 1) * 60 + MINUTE_KEEP_S)
        pipe.execute()

    def read(self) -> dict[tuple[str, str], int]:
        """{(function, kind): count}."""
        out: dict[tuple[str, str], int] = {}
        for field, value in self._redis.hgetall(self.key).items():
            name, _, kind = field.decode().rpartition("|")
            out[(name, kind)] = int(value)
        return out
