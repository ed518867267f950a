"""Admission under reserved and account concurrency: lease-based counting semaphores in Redis.

One sorted set of lease ids scored by expiry per function with a reservation, plus one shared
pool for every unreserved function, sized account limit minus the sum of reservations (as on
Lambda). Acquire and release are single Lua calls: purge expired leases, count, add. A lease
whose id is already held (a redelivered invocation) is renewed, not counted twice; a lease of a
dead holder expires after the function's timeout plus a margin, so no slot leaks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from warren.keys import Keys, lease_function
from warren.store.redis import evalsha_pipelined

ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local expires = now + tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local finished = tonumber(ARGV[3])
for i = 4, 3 + finished do
  redis.call('ZREM', KEYS[1], ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local count = redis.call('ZCARD', KEYS[1])
local admitted = {tostring(expires), 0}
local first = 4 + finished
for i = first, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], expires, ARGV[i])
    admitted[#admitted + 1] = i - first
  elseif count < limit then
    redis.call('ZADD', KEYS[1], expires, ARGV[i])
    count = count + 1
    admitted[#admitted + 1] = i - first
  end
end
admitted[2] = count
return admitted
"""

RENEW = """
local t = redis.call('TIME')
local expires = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], 'XX', expires, ARGV[2])
return tostring(expires)
"""

RESERVED_REASON = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_REASON = "ConcurrentInvocationLimitExceeded"


@dataclass(frozen=True)
class Grant:
    """One acquire's outcome: which requested leases were admitted, where, until when."""

    key: str
    admitted: list[int]
    expires: float
    limit: int
    reason: str
    in_use: int = 0  # leases held under `key` once this acquire was done

    @classmethod
    def from_reply(cls, reply: Sequence[Any], key: str, limit: int, reason: str) -> Grant:
        # The script returns {expires, count, admitted index...}.
        admitted = [int(i) for i in reply[2:]]
        return cls(key, admitted, float(reply[0]), limit, reason, int(reply[1]))


class Semaphore:
    """Fleet-wide concurrency: `acquire` before an invocation runs, `release` after it ran."""

    def __init__(
        self,
        client: redis.Redis[bytes],
        prefix: str,
        account_limit: int,
        reservations: Callable[[], Mapping[str, int]],
        *,
        margin_s: float = 30.0,
        cache_s: float = 1.0,
    ) -> None:
        self._redis = client
        self.redis = client
        self._prefix = prefix
        self._account_limit = account_limit
        self._reservations = reservations
        self.margin_s = margin_s
        self._cache_s = cache_s
        self._cached: Mapping[str, int] = {}
        self._cached_at = -1e9
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._sha = ""

    @property
    def account_key(self) -> str:
        return Keys(self._prefix).account_leases

    def function_key(self, function: str) -> str:
        return Keys(self._prefix).function_leases(function)

    def reservations(self) -> Mapping[str, int]:
        # Read at most once a second: `concurrency set` takes effect within that.
        now = time.monotonic()
        if now - self._cached_at > self._cache_s:
            self._cached = dict(self._reservations())
            self._cached_at = now
        return self._cached

    def limit_for(self, function: str) -> tuple[str, int, str]:
        """(key, limit, Lambda's throttle Reason) for `function`."""
        reserved = self.reservations()
        if function in reserved:
            return self.function_key(function), int(reserved[function]), RESERVED_REASON
        unreserved = self._account_limit - sum(reserved.values())
        return self.account_key, max(0, unreserved), ACCOUNT_REASON

    def ttl_s(self, timeout_s: float) -> float:
        return timeout_s + self.margin_s

    def acquire(
        self,
        function: str,
        lease_ids: Sequence[str],
        timeout_s: float,
        finished: Sequence[str] = (),
    ) -> Grant:
        """Admit what fits of `lease_ids`; `finished` are leases of this function the caller
        knows are done (it holds their replies): they are released first, in the same call, so
        a caller's next invocation never races its previous one's release."""
        key, limit, reason = self.limit_for(function)
        reply = self._acquire(
            keys=[key], args=[self.ttl_s(timeout_s), limit, len(finished), *finished, *lease_ids]
        )
        return Grant.from_reply(reply, key, limit, reason)

    def acquire_many(self, requests: Sequence[tuple[str, Sequence[str], float]]) -> list[Grant]:
        """Several acquires in one Redis round trip (one Lua call per function)."""
        limits = [self.limit_for(function) for function, _ids, _t in requests]
        replies = self._acquire_pipelined(requests, limits)
        return [
            Grant.from_reply(reply, key, limit, reason)
            for (key, limit, reason), reply in zip(limits, replies, strict=True)
        ]

    def _acquire_pipelined(
        self,
        requests: Sequence[tuple[str, Sequence[str], float]],
        limits: Sequence[tuple[str, int, str]],
    ) -> list[Any]:
        calls = [
            (1, key, self.ttl_s(timeout_s), limit, 0, *ids)
            for (_f, ids, timeout_s), (key, limit, _r) in zip(requests, limits, strict=True)
        ]
        replies, self._sha = evalsha_pipelined(self._redis, ACQUIRE, self._sha, calls)
        return replies

    def renew(self, key: str, lease_id: str, timeout_s: float) -> float:
        return float(self._renew(keys=[key], args=[self.ttl_s(timeout_s), lease_id]))

    @staticmethod
    def release_command(key: str, lease_ids: Sequence[str]) -> tuple[str, ...]:
        """The release as a raw command, for `warren.store.rawpipe.execute_raw`."""
        return ("ZREM", key, *lease_ids)

    def release(self, key: str, lease_ids: Sequence[str], pipe: Any = None) -> None:
        """Give leases back; pass a pipeline to fold it into another round trip."""
        if lease_ids:
            (pipe if pipe is not None else self._redis).zrem(key, *lease_ids)

    def in_flight(self) -> dict[str, int]:
        """Live leases per function, over every semaphore key of this fleet."""
        counts: dict[str, int] = {}
        now = time.time()
        keys = [self.account_key, *(self.function_key(f) for f in self.reservations())]
        for key in keys:
            for member in self._redis.zrangebyscore(key, now, "+inf"):
                name = lease_function(member)
                counts[name] = counts.get(name, 0) + 1
        return counts
