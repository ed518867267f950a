"""Keeps this worker's share of every provisioned concurrency config initialised, and reports it.

Each round (every second) the provisioner reads the configs, resolves each to the version it
names now (an alias may have moved), computes this worker's share among the live workers of the
function's pool (warren/provisioned.py: no coordinator), starts and fully initialises the
sandboxes it lacks, trims the ones it no longer needs, and writes what it holds to Redis for
`warren status`. A worker that dies stops reporting and stops beating; within one heartbeat TTL
the others count one worker fewer and create its share.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from warren.errors import NotFound, StoreUnavailable, WarrenError
from warren.function import FunctionSpec
from warren.provisioned import Allocation, share
from warren.store.provisioned import ProvisionedStore
from workers.codecache import CodeCache
from workers.pool import SandboxPool, sandbox_key

log = logging.getLogger("warren.worker")

RETRY_AFTER_S = 30.0  # an init that failed is not retried sooner (it would fail in a loop)


@dataclass
class _Target:
    spec: FunctionSpec
    count: int
    error: str | None = None


class Provisioner:
    """A worker's loop over the configs: its share initialised in the pool's reserve, reported."""

    def __init__(
        self,
        store: ProvisionedStore,
        resolve: Callable[[str, str], FunctionSpec],
        pool: SandboxPool,
        codes: CodeCache,
        worker_id: str,
        pool_name: str,
        live_workers: Callable[[], list[str]],
        interval_s: float = 1.0,
    ) -> None:
        self._store = store
        self._resolve = resolve
        self._pool = pool
        self._codes = codes
        self.worker_id = worker_id
        self.pool_name = pool_name
        self._live = live_workers
        self.interval_s = interval_s
        self._failed: dict[Hashable, tuple[str, float]] = {}  # key -> (why, when)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self, stop: threading.Event) -> None:
        self._stop = stop
        self._thread = threading.Thread(target=self._loop, name="provisioner", daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self._store.report(self.worker_id, {}, 1)
        except StoreUnavailable:
            pass

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.round()
            except WarrenError as exc:
                log.warning("provisioned concurrency: %s", exc)
            self._stop.wait(self.interval_s)

    def round(self) -> None:
        """Bring this worker's provisioned sandboxes to its share; report what it holds."""
        live = set(self._live()) | {self.worker_id}
        targets: dict[Hashable, _Target] = {}
        wanted: list[tuple[str, Hashable, int, str]] = []
        for config in self._store.all():
            try:
                spec = self._resolve(config.function, config.qualifier)
            except NotFound:
                continue  # its function, version or alias is gone: nothing to provision
            if spec.pool != self.pool_name:
                continue
            mine = share(config.requested, sorted(live), self.worker_id, config.key)
            key = sandbox_key(spec)
            target = targets.setdefault(key, _Target(spec, 0))
            target.count += mine
            wanted.append((config.key, key, mine, spec.version))
        self._pool.reserve.drop_dead()  # a child killed while idle would pay init again
        for key in self._pool.reserve.keys():
            if key not in targets:
                self._pool.reserve.trim(key, 0)
        for key, target in targets.items():
            self._pool.reserve.trim(key, target.count)
            target.error = self._fill(key, target)
        remaining = {key: self._pool.reserve.counts(key)[0] for key in targets}
        allocations: dict[str, Allocation] = {}
        for config_key, key, mine, version in wanted:
            ready = min(mine, remaining[key])
            remaining[key] -= ready
            error = targets[key].error if ready < mine else None
            allocations[config_key] = Allocation(mine, ready, version, error)
        self._store.report(self.worker_id, allocations, max(3, int(self.interval_s * 6)))

    def _fill(self, key: Hashable, target: _Target) -> str | None:
        failed = self._failed.get(key)
        if failed is not None and time.monotonic() - failed[1] < RETRY_AFTER_S:
            return failed[0]
        while self._pool.reserve.counts(key)[0] < target.count and not self._stop.is_set():
            why = self._add(key, target.spec)
            if why is not None:
                log.error("provisioned %s:%s cannot initialise: %s", target.spec.name,
                          target.spec.version, why)
                self._failed[key] = (why, time.monotonic())
                return why
        self._failed.pop(key, None)
        return None

    def _add(self, key: Hashable, spec: FunctionSpec) -> str | None:
        try:
            code_dir = self._codes.path(spec.code_sha256)
            if spec.layers:
                self._codes.opt([layer.code_sha256 for layer in spec.layers])
            sandbox = self._pool.factory(spec, code_dir)
        except WarrenError as exc:
            return str(exc)
        try:
            why = sandbox.start(wait=True)
        except WarrenError as exc:  # e.g. no sandbox uid left: not this config's fault alone
            why = str(exc)
        if why is not None:
            sandbox.close()
            return why
        self._pool.reserve.add(key, sandbox)
        return None
