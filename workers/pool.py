"""Warm sandboxes per function version in a bounded LRU pool with idle reaping."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Protocol

from sandbox.outcome import Outcome
from warren.function import FunctionSpec


class WarmSandbox(Protocol):
    """What the pool needs of sandbox.Sandbox."""

    @property
    def usable(self) -> bool:
        """Not closed and not discarded after a failure; cheap (no syscall)."""
        ...

    def invoke(
        self,
        event: Any = None,
        *,
        payload: bytes | None = None,
        request_id: str | None = None,
        client_context: bytes | None = None,
    ) -> Outcome: ...

    def close(self) -> None: ...


SandboxFactory = Callable[[FunctionSpec, Path], WarmSandbox]


def sandbox_key(spec: FunctionSpec) -> Hashable:
    """Sandboxes are interchangeable only for the same code and configuration."""
    return (
        spec.name,
        spec.version,
        spec.code_sha256,
        spec.runtime,
        spec.handler,
        spec.memory_mb,
        spec.timeout_s,
        tuple(sorted(spec.env.items())),
    )


class SandboxPool:
    """Idle warm sandboxes, at most `max_idle` in all, least recently used evicted first.

    A sandbox is checked out by one slot thread at a time and checked back in after its run; a
    dead one is discarded (the next checkout starts a fresh one).
    """

    def __init__(self, factory: SandboxFactory, max_idle: int = 8, idle_s: float = 300.0) -> None:
        self._factory = factory
        self.max_idle = max_idle
        self.idle_s = idle_s
        self._idle: OrderedDict[tuple[Hashable, int], tuple[WarmSandbox, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._serial = 0
        self.busy = 0
        self._last_spec: FunctionSpec | None = None
        self._last_key: Hashable = None

    def checkout(self, spec: FunctionSpec, code_dir: Path) -> tuple[Hashable, WarmSandbox]:
        # A chunk's invocations share one spec object: its key is computed once.
        if spec is self._last_spec:
            key = self._last_key
        else:
            key = sandbox_key(spec)
            self._last_spec, self._last_key = spec, key
        with self._lock:
            self.busy += 1
            for entry in reversed(self._idle):
                if entry[0] == key:
                    # A child that died while idle is restarted by Sandbox.invoke itself.
                    return key, self._idle.pop(entry)[0]
        try:
            return key, self._factory(spec, code_dir)
        except BaseException:
            with self._lock:
                self.busy -= 1
            raise

    def checkin(self, key: Hashable, sandbox: WarmSandbox) -> None:
        evicted: list[WarmSandbox] = []
        with self._lock:
            self.busy -= 1
            if sandbox.usable:
                self._serial += 1
                self._idle[(key, self._serial)] = (sandbox, time.monotonic())
                while len(self._idle) > self.max_idle:
                    evicted.append(self._idle.popitem(last=False)[1][0])
            else:
                evicted.append(sandbox)
        for old in evicted:
            old.close()

    def reap(self) -> int:
        """Close sandboxes idle for longer than `idle_s`; returns how many."""
        cutoff = time.monotonic() - self.idle_s
        with self._lock:
            stale = [k for k, (_, at) in self._idle.items() if at < cutoff]
            victims = [self._idle.pop(k)[0] for k in stale]
        for sandbox in victims:
            sandbox.close()
        return len(victims)

    @property
    def warm(self) -> int:
        with self._lock:
            return len(self._idle) + self.busy

    def close(self) -> None:
        with self._lock:
            victims = [sb for sb, _ in self._idle.values()]
            self._idle.clear()
        for sandbox in victims:
            sandbox.close()
