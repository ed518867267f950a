"""Throttle counts per function in one Redis hash: sync 429s at the caller, async deferrals.

Written only when a throttle happens (the path that waits anyway), read by the fleet-wide
metrics (`warren_throttles_total{kind="sync"|"async"}`) and the console.
"""

from __future__ import annotations

from typing import Any

import redis

from warren.keys import Keys

KINDS = ("sync", "async")


class ThrottleStore:
    def __init__(self, client: redis.Redis[bytes], prefix: str = "warren") -> None:
        self._redis = client
        self.key = Keys(prefix).throttles

    def command(self, function: str, kind: str, n: int = 1) -> tuple[Any, ...]:
        """The HINCRBY as a raw command, to ride on a round trip that happens anyway."""
        return ("HINCRBY", self.key, f"{function}|{kind}", n)

    def add(self, function: str, kind: str, n: int = 1) -> None:
        self._redis.hincrby(self.key, f"{function}|{kind}", n)

    def read(self) -> dict[tuple[str, str], int]:
        """{(function, kind): count}."""
        out: dict[tuple[str, str], int] = {}
        for field, value in self._redis.hgetall(self.key).items():
            name, _, kind = field.decode().rpartition("|")
            out[(name, kind)] = int(value)
        return out
