"""The poller: runs every enabled mapping on exactly one poller of the fleet, under a renewed lease.

Each mapping has a lease key in Redis (`p:mapping:<uuid>:lease`, SET NX PX) holding the id of
the poller running it. The holder renews it every tick; a poller that dies stops renewing and
another takes the mapping over once the lease expires (lease_s, 8 s by default: well inside
15 s). Pollers announce themselves in `p:pollers` (a zset scored by heartbeat expiry), and each
takes at most its fair share, ceil(active mappings / live pollers), shedding the excess when
more pollers join, so mappings spread across the fleet. The poller also completes the
transitional states (Creating, Enabling, Updating -> Enabled; Disabling -> Disabled; Deleting
-> gone) of the mappings it holds.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis

from warren.errors import WarrenError
from warren.mapping import ACTIVE, MappingSpec
from warren.store.mappings import MappingStore

log = logging.getLogger("warren.poller")

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Runner(Protocol):
    def run(self, stop: threading.Event) -> None:
        """Serve the mapping until `stop` is set, then hand back what is in flight."""
        ...


RunnerFactory = Callable[[MappingSpec, str], Runner]


@dataclass
class _Owned:
    spec: MappingSpec
    thread: threading.Thread
    stop: threading.Event
    then: str = ""  # what to do once the runner has drained: delete | disable | restart | shed


class Poller:
    """Runs mappings handed out by leases; `run(stop)` in the foreground, or `tick()` by hand."""

    def __init__(
        self,
        store: MappingStore,
        runner_factory: RunnerFactory,
        *,
        poller_id: str | None = None,
        lease_s: float = 8.0,
        tick_s: float = 1.0,
        join_s: float = 20.0,
    ) -> None:
        self.store = store
        self.redis = store.redis
        self.id = poller_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_ms = int(lease_s * 1000)
        self.tick_s = tick_s
        self.join_s = join_s
        self._factory = runner_factory
        self._owned: dict[str, _Owned] = {}
        self._ticks = 0
        self._renew = self.redis.register_script(_RENEW)
        self._release = self.redis.register_script(_RELEASE)

    @property
    def owned(self) -> list[str]:
        return sorted(self._owned)

    def run(self, stop: threading.Event) -> None:
        log.info("poller %s started", self.id)
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    self.tick()
                except (WarrenError, redis.RedisError) as exc:
                    log.warning("poller %s: tick failed: %s", self.id, exc)
                stop.wait(max(0.0, self.tick_s - (time.monotonic() - started)))
        finally:
            self.shutdown()

    def tick(self) -> None:
        """One round: heartbeat, renew or drop held leases, settle states, take a fair share."""
        self._ticks += 1
        now_ms = int(time.time() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(f"{self.store.prefix}:pollers", {self.id: now_ms + self.lease_ms})
        pipe.zremrangebyscore(f"{self.store.prefix}:pollers", "-inf", now_ms)
        pipe.execute()
        specs = {s.uuid: s for s in self.store.list_mappings()}
        for mapping_id in list(self._owned):
            self._keep(mapping_id, specs.get(mapping_id))
        active = [s for s in specs.values() if s.state in ACTIVE]
        pollers = max(1, len(self.store.live_pollers()))
        share = math.ceil(len(active) / pollers)
        for spec in specs.values():
            if spec.uuid in self._owned:
                continue
            if spec.state in ("Disabling", "Deleting"):
                self._settle_orphan(spec)
            elif spec.state in ACTIVE and len(self._owned) < share:
                self._take(spec)
        draining = any(o.stop.is_set() for o in self._owned.values())
        if len(self._owned) > share and self._ticks > 3 and not draining:
            self._wind_down(self._owned[self.owned[-1]], "shed")

    def shutdown(self) -> None:
        """Stop every runner (they hand back what is in flight) and release their leases."""
        for owned in self._owned.values():
            owned.stop.set()
        deadline = time.monotonic() + self.join_s
        for mapping_id, owned in list(self._owned.items()):
            owned.thread.join(max(0.1, deadline - time.monotonic()))
            self._release_lease(mapping_id)
        self._owned.clear()
        try:
            self.redis.zrem(f"{self.store.prefix}:pollers", self.id)
        except redis.RedisError:
            pass
        log.info("poller %s stopped", self.id)

    # -- internals ------------------------------------------------------------------------
    def _lease_key(self, mapping_id: str) -> str:
        return self.store.key(mapping_id, "lease")

    def _acquire(self, mapping_id: str) -> bool:
        return bool(self.redis.set(self._lease_key(mapping_id), self.id, nx=True, px=self.lease_ms))

    def _take(self, spec: MappingSpec) -> None:
        if not self._acquire(spec.uuid):
            return
        self._start(spec)
        if spec.state != "Enabled":
            self.store.set_state(spec.uuid, "Enabled")
        log.info("poller %s: now running mapping %s", self.id, spec.uuid)

    def _start(self, spec: MappingSpec) -> None:
        runner = self._factory(spec, self.id)
        stop = threading.Event()

        def serve() -> None:
            try:
                runner.run(stop)
            except Exception:
                log.exception("mapping %s: runner crashed; it will be restarted", spec.uuid)

        thread = threading.Thread(target=serve, name=f"mapping-{spec.uuid[:8]}", daemon=True)
        thread.start()
        self._owned[spec.uuid] = _Owned(spec, thread, stop)

    def _keep(self, mapping_id: str, spec: MappingSpec | None) -> None:
        owned = self._owned[mapping_id]
        renewed = self._renew(keys=[self._lease_key(mapping_id)], args=[self.id, self.lease_ms])
        if not renewed:
            # Another poller holds it now: stop at once, without touching its state.
            log.warning("poller %s: lost the lease of mapping %s", self.id, mapping_id)
            owned.stop.set()
            del self._owned[mapping_id]
            return
        if not owned.stop.is_set():
            if spec is None or spec.state == "Deleting":
                self._wind_down(owned, "delete")
            elif spec.state not in ACTIVE:
                self._wind_down(owned, "disable")
            elif spec.revision != owned.spec.revision or not owned.thread.is_alive():
                self._wind_down(owned, "restart")
            elif spec.state != "Enabled":
                self.store.set_state(mapping_id, "Enabled")
        if owned.stop.is_set() and not owned.thread.is_alive():
            self._finish(mapping_id, owned, spec)

    def _wind_down(self, owned: _Owned, then: str) -> None:
        # Runners drain (finish in-flight batches) in their own thread; the tick goes on
        # renewing every lease meanwhile and completes `then` once the runner has stopped.
        owned.then = then
        owned.stop.set()

    def _finish(self, mapping_id: str, owned: _Owned, spec: MappingSpec | None) -> None:
        del self._owned[mapping_id]
        if owned.then == "restart" and spec is not None and spec.state in ACTIVE:
            self._start(spec)
            if spec.state != "Enabled":
                self.store.set_state(mapping_id, "Enabled")
            return
        if owned.then == "delete" and spec is not None:
            self.store.purge(mapping_id)
        elif owned.then == "disable" and spec is not None and spec.state == "Disabling":
            self.store.set_state(mapping_id, "Disabled")
        self._release_lease(mapping_id)

    def _settle_orphan(self, spec: MappingSpec) -> None:
        if not self._acquire(spec.uuid):
            return
        if spec.state == "Deleting":
            self.store.purge(spec.uuid)
        else:
            self.store.set_state(spec.uuid, "Disabled")
        self._release_lease(spec.uuid)

    def _release_lease(self, mapping_id: str) -> None:
        try:
            self._release(keys=[self._lease_key(mapping_id)], args=[self.id])
        except redis.RedisError:
            pass
