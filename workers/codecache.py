"""Code bundles unpacked once per worker into a local cache (CodeStore verifies the sha256)."""

from __future__ import annotations

import threading
from pathlib import Path

from warren.codestore import CodeStore


class CodeCache:
    """`path(sha256)` returns the unpacked bundle, fetching it from the store the first time."""

    def __init__(self, store: CodeStore, root: Path) -> None:
        self._store = store
        self.root = root
        self._known: dict[str, Path] = {}
        self._lock = threading.Lock()

    def path(self, sha256: str) -> Path:
        known = self._known.get(sha256)
        if known is not None:
            return known
        with self._lock:
            if sha256 not in self._known:
                self._known[sha256] = self._store.materialize(sha256, self.root)
            return self._known[sha256]
