"""Sync leases the gateway keeps between calls to a function, given back once they are idle.

The gateway's counterpart of warren/leasepark.py, for many callers on one event loop: a call
whose lease was granted with room to spare under the limit marks it `held` (the worker leaves
it alone), and once the reply is in, parks it; the next call to that function takes a parked
lease instead of making a Redis round trip. A lease parked for `idle_s` is released by a task
on the loop; what is left is released on close. A parked lease counts as in flight for at most
`idle_s` after its call, and a gateway that dies lets its leases expire with their TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

import redis.asyncio

from router.admission.parking import ParkedLease
from warren.errors import StoreUnavailable
from warren.store.redis import redis_errors

log = logging.getLogger("warren.gateway")


class LeasePark:
    """Parked leases per function (any number of them), and the task that gives idle ones back."""

    def __init__(self, client: redis.asyncio.Redis[bytes], idle_s: float) -> None:
        self._redis = client
        self.idle_s = idle_s
        self._parked: dict[str, list[ParkedLease]] = defaultdict(list)
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self.idle_s > 0 and not self._closed

    def take(self, function: str, wait_s: float) -> ParkedLease | None:
        """A parked lease that outlives a call of `wait_s`, now the caller's (None if none)."""
        leases = self._parked.get(function)
        now = time.monotonic()
        while leases:
            lease = leases.pop()  # the most recently parked: the furthest from its expiry
            if lease.usable_for(wait_s, now):
                return lease
            self._release_soon([lease])
        return None

    def park(self, function: str, lease: ParkedLease) -> None:
        if not self.enabled:
            self._release_soon([lease])
            return
        self._parked[function].append(lease)
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.ensure_future(self._reap())

    async def close(self) -> None:
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        leftover = [lease for leases in self._parked.values() for lease in leases]
        self._parked.clear()
        await self._release(leftover)

    async def _reap(self) -> None:
        while self._parked:
            await asyncio.sleep(self.idle_s / 2)
            now = time.monotonic()
            due = []
            for function in list(self._parked):
                leases = self._parked[function]
                keep = [lease for lease in leases if now - lease.idle_since < self.idle_s]
                due += [lease for lease in leases if now - lease.idle_since >= self.idle_s]
                if keep:
                    self._parked[function] = keep
                else:
                    del self._parked[function]
            await self._release(due)

    def _release_soon(self, leases: list[ParkedLease]) -> None:
        asyncio.ensure_future(self._release(leases))

    async def _release(self, leases: list[ParkedLease]) -> None:
        if not leases:
            return
        try:
            with redis_errors("parked leases", self._redis):  # type: ignore[arg-type]
                pipe = self._redis.pipeline(transaction=False)
                for lease in leases:
                    pipe.zrem(lease.key, lease.lease_id)
                await pipe.execute()
        except StoreUnavailable as exc:
            # Not lost: each lease expires with its TTL (function timeout plus margins).
            log.warning("cannot release %d parked lease(s), they will expire: %s", len(leases), exc)
