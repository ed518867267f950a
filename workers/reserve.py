"""The pool's provisioned sandboxes: initialised ahead of traffic, never evicted or reaped.

The provisioner (workers/provisioner.py) adds sandboxes whose init has already run; invocations
of the same spec take them before any on-demand sandbox. A provisioned sandbox stays owned by
the reserve while an invocation uses it, and comes back to it afterwards; one that failed is
dropped, and the provisioner replaces it on its next round.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any


class Reserve:
    """Provisioned sandboxes per sandbox key: idle ones ready to take, and the ones in use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[Hashable, list[Any]] = {}
        self._owned: dict[int, Hashable] = {}  # id(sandbox) -> its key, idle or in use
        self._surplus: set[int] = set()  # in use, but to be closed when it comes back
        self._closed = False
        # Per (function, version): invocations a provisioned sandbox served, and those that found
        # every one of them busy and spilled over to on-demand (Lambda's two metrics).
        self.served: dict[tuple[str, str], int] = {}
        self.spilled: dict[tuple[str, str], int] = {}

    def add(self, key: Hashable, sandbox: Any) -> None:
        with self._lock:
            if not self._closed:
                self._owned[id(sandbox)] = key
                self._idle.setdefault(key, []).append(sandbox)
                return
        sandbox.close()  # the worker is shutting down

    def take(self, key: Hashable) -> Any | None:
        if not self._owned:  # no provisioned sandbox at all: the common case, no lock
            return None
        with self._lock:
            idle = self._idle.get(key)
            label = _label(key)
            if idle:
                self.served[label] = self.served.get(label, 0) + 1
                return idle.pop()
            if key in self._owned.values():
                self.spilled[label] = self.spilled.get(label, 0) + 1
            return None

    def usage(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(provisioned sandboxes, those running an invocation now) per (function, version)."""
        with self._lock:
            out: dict[tuple[str, str], tuple[int, int]] = {}
            for key in set(self._owned.values()):
                owned = sum(1 for k in self._owned.values() if k == key)
                busy = owned - len(self._idle.get(key, ()))
                total, running = out.get(_label(key), (0, 0))
                out[_label(key)] = (total + owned, running + busy)
            return out

    def give_back(self, key: Hashable, sandbox: Any) -> bool:
        """True if `sandbox` is provisioned (kept if still usable, else forgotten to be closed)."""
        with self._lock:
            if id(sandbox) not in self._owned:
                return False
            if sandbox.usable and id(sandbox) not in self._surplus:
                self._idle.setdefault(key, []).append(sandbox)
                return True
            del self._owned[id(sandbox)]
            self._surplus.discard(id(sandbox))
        sandbox.close()
        return True

    def counts(self, key: Hashable) -> tuple[int, int]:
        """(owned and not surplus, idle and ready) for one key."""
        with self._lock:
            owned = [s for s, k in self._owned.items() if k == key and s not in self._surplus]
            return len(owned), len(self._idle.get(key, ()))

    def trim(self, key: Hashable, keep: int) -> None:
        """Keep at most `keep` of `key`: idle extras closed now, busy ones when they come back."""
        victims: list[Any] = []
        with self._lock:
            owned = [s for s, k in self._owned.items() if k == key and s not in self._surplus]
            extra = len(owned) - keep
            idle = self._idle.get(key, [])
            while extra > 0 and idle:
                sandbox = idle.pop(0)
                del self._owned[id(sandbox)]
                victims.append(sandbox)
                extra -= 1
            if extra > 0:
                idle_ids = {id(s) for s in idle}
                busy = [s for s in owned if s in self._owned and s not in idle_ids]
                self._surplus.update(busy[:extra])
        for sandbox in victims:
            sandbox.close()

    def drop_dead(self) -> int:
        """Close idle sandboxes whose child died (the provisioner starts new ones)."""
        dead: list[Any] = []
        with self._lock:
            for idle in self._idle.values():
                for sandbox in [s for s in idle if not getattr(s, "alive", True)]:
                    idle.remove(sandbox)
                    del self._owned[id(sandbox)]
                    dead.append(sandbox)
        for sandbox in dead:
            sandbox.close()
        return len(dead)

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(set(self._owned.values()))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            victims = [s for idle in self._idle.values() for s in idle]
            self._idle.clear()
            self._owned.clear()
        for sandbox in victims:
            sandbox.close()


def _label(key: Hashable) -> tuple[str, str]:
    # Pool keys start with (function, version) (workers/pool.py, sandbox_key).
    if isinstance(key, tuple) and len(key) >= 2:
        return str(key[0]), str(key[1])
    return str(key), ""
