"""Sync leases a caller keeps between its calls to one function, given back once it is idle.

A sync call needs a concurrency lease before it is published. Taking one is a Redis round trip
on the critical path of every call (about a sixth of a trivial round trip here). A caller that
calls the same function again right away can keep the lease of its previous call instead: the
call is marked `held`, the worker leaves the lease alone, and the caller's next call reuses it
with no Redis call at all. A lease parked this way for `idle_s` without a call is released by a
background thread, and `close()` releases what is left.

What it costs: a parked lease counts as one execution in flight for at most `idle_s` after its
call ended, so the caller that parks it is charged for the gap between its calls. The invoker
only parks a lease when the limit had room left after admitting it, so a function at its limit
never has a slot held by an idle caller; a caller that dies lets it expire with its TTL, as a
dead worker does.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from dataclasses import dataclass

import redis

from warren.errors import StoreUnavailable
from warren.store.redis import redis_errors

log = logging.getLogger("warren.client")

MARGIN_S = 1.0  # a parked lease is reused only if it outlives the whole next call by this much
DOZE_S = 1.0  # with nothing parked this long, the thread sleeps until a lease is parked


@dataclass(frozen=True)
class ParkedLease:
    key: str
    lease_id: str
    expires: float  # epoch seconds on Redis' clock, as the semaphore returned it
    valid_until: float  # the same moment on this process's monotonic clock, never later
    idle_since: float  # monotonic: when the call that held it ended

    def usable_for(self, wait_s: float, now: float) -> bool:
        return self.valid_until - now > wait_s + MARGIN_S


class LeaseParking:
    """Parked leases per function, and the thread that gives idle ones back."""

    def __init__(self, client: redis.Redis[bytes], idle_s: float) -> None:
        self._redis = client  # its own connection: used from the releasing thread
        self.idle_s = idle_s
        self._cond = threading.Condition()
        self._parked: dict[str, ParkedLease] = {}
        self._thread: threading.Thread | None = None
        self._sleeping = False  # waiting with nothing parked: a new lease must wake it
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self.idle_s > 0 and not self._closed

    def take(self, function: str) -> ParkedLease | None:
        """The function's parked lease, now owned by the caller again (None if there is none)."""
        with self._cond:
            return self._parked.pop(function, None)

    def park(self, function: str, lease: ParkedLease) -> None:
        with self._cond:
            if self._closed:
                released = [lease]
            else:
                released = []
                old = self._parked.get(function)
                if old is not None and old.lease_id != lease.lease_id:
                    released.append(old)
                self._parked[function] = lease
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="warren-lease-parking", daemon=True
                    )
                    self._thread.start()
                    # A program that never closes its client still gives leases back on exit.
                    atexit.register(self.close)
                elif self._sleeping:
                    self._cond.notify()
        self._release(released)

    def close(self) -> None:
        """Release every parked lease now and stop the thread."""
        atexit.unregister(self.close)
        with self._cond:
            self._closed = True
            leftover = list(self._parked.values())
            self._parked.clear()
            self._cond.notify()
            thread = self._thread
        self._release(leftover)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    def _run(self) -> None:
        empty_since: float | None = None
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                idle = [f for f, p in self._parked.items() if now - p.idle_since >= self.idle_s]
                due = [self._parked.pop(f) for f in idle]
                if due:
                    self._cond.release()
                    try:
                        self._release(due)
                    finally:
                        self._cond.acquire()
                    continue
                if self._parked:
                    first = min(p.idle_since for p in self._parked.values())
                    self._cond.wait(first + self.idle_s - now)
                    empty_since = None
                elif empty_since is None or now - empty_since < DOZE_S:
                    # A caller between calls has taken its lease and parks it again in a
                    # moment: a timed look spares every call a wake-up of this thread.
                    empty_since = now if empty_since is None else empty_since
                    self._cond.wait(self.idle_s)
                else:
                    self._sleeping = True
                    try:
                        self._cond.wait()
                    finally:
                        self._sleeping = False

    def _release(self, leases: list[ParkedLease]) -> None:
        if not leases:
            return
        try:
            with redis_errors("releasing parked leases"):
                pipe = self._redis.pipeline(transaction=False)
                for lease in leases:
                    pipe.zrem(lease.key, lease.lease_id)
                pipe.execute()
        except StoreUnavailable as exc:
            # Not lost: each lease expires with its TTL (function timeout plus margins).
            log.warning("cannot release %d parked lease(s), they will expire: %s", len(leases), exc)
