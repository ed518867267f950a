"""Code bundles unpacked once per worker into a local cache (CodeStore verifies the sha256).

The cache is pruned, so a worker that lives through many deploys does not fill its disk: a
bundle no worker sharing the directory has used for `ttl_s` is removed (and half-unpacked
scratch directories a crashed worker left behind, after an hour). Use is recorded as the
bundle directory's mtime, refreshed at most once a minute per bundle and process. A shared
lock on `<root>/.prune.lock` makes "refresh, or find it gone and unpack it again" and "check
the age, then delete" exclusive, so a bundle in use is never removed under its caller.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from warren.errors import CodeBundleError
from warren.store.codes import CodeStore
from workers.optdir import merge, opt_name

log = logging.getLogger("warren.worker")

TOUCH_EVERY_S = 60.0  # how stale a bundle's mtime may get while it is being used
DEFAULT_TTL_S = 24 * 3600.0
MIN_TTL_S = 900.0  # the longest timeout: a run never outlives its bundle's last refresh by more
SCRATCH_TTL_S = 3600.0  # a half-unpacked directory this old belongs to a crashed unpack
LOCK_NAME = ".prune.lock"


class CodeCache:
    """`path(sha256)` returns the unpacked bundle, fetching it from the store the first time."""

    def __init__(self, store: CodeStore, root: Path, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._store = store
        self.root = root
        self.ttl_s = max(ttl_s, MIN_TTL_S)
        self._known: dict[str, tuple[Path, float]] = {}  # sha256 -> (path, refreshed at)
        self._lock = threading.Lock()

    def path(self, sha256: str) -> Path:
        known = self._known.get(sha256)
        if known is not None and time.monotonic() - known[1] < TOUCH_EVERY_S:
            return known[0]
        with self._lock:
            try:
                with self._locked(fcntl.LOCK_SH):
                    path = self._store.materialize(sha256, self.root)  # an existing one is kept
                    _refresh(path)
            except OSError as exc:
                raise CodeBundleError(f"code cache {self.root}: {exc}") from None
            self._known[sha256] = (path, time.monotonic())
            return path

    def opt(self, shas: Sequence[str]) -> Path:
        """The merged directory of a function's layers (workers/optdir.py), made the first time."""
        name = opt_name(shas)
        known = self._known.get(name)
        if known is not None and time.monotonic() - known[1] < TOUCH_EVERY_S:
            return known[0]
        layers = [self.path(sha256) for sha256 in shas]
        with self._lock:
            final = self.root / name
            try:
                with self._locked(fcntl.LOCK_SH):
                    if not final.is_dir():
                        scratch = Path(tempfile.mkdtemp(prefix=f".{name[:20]}-", dir=self.root))
                        try:
                            merge(layers, scratch)
                            os.chmod(scratch, 0o755)
                            os.rename(scratch, final)
                        except OSError:
                            if not final.is_dir():  # not a race lost to another worker
                                raise
                        finally:
                            shutil.rmtree(scratch, ignore_errors=True)
                    _refresh(final)
            except OSError as exc:
                raise CodeBundleError(f"cannot merge layers in {self.root}: {exc}") from None
            self._known[name] = (final, time.monotonic())
            return final

    def prune(self, now: float | None = None) -> int:
        """Remove bundles unused for `ttl_s` and stale scratch directories; returns how many."""
        if not self.root.is_dir():
            return 0
        now = time.time() if now is None else now
        trash: list[Path] = []
        with self._locked(fcntl.LOCK_EX):
            for entry in os.scandir(self.root):
                if entry.name == LOCK_NAME or not entry.is_dir(follow_symlinks=False):
                    continue
                scratch = entry.name.startswith(".")
                ttl = SCRATCH_TTL_S if scratch else self.ttl_s
                try:
                    if now - entry.stat(follow_symlinks=False).st_mtime < ttl:
                        continue
                    # Out of the way under the lock (atomic), deleted after it.
                    gone = self.root / f".trash-{entry.name}-{os.getpid()}"
                    os.rename(entry.path, gone)
                except FileNotFoundError:
                    continue
                trash.append(gone)
                if not scratch:
                    log.info("code cache: removing bundle %s, unused for %.0f s", entry.name, ttl)
        for gone in trash:
            shutil.rmtree(gone, ignore_errors=True)
        with self._lock:
            self._known = {s: k for s, k in self._known.items() if k[0].is_dir()}
        return len(trash)

    def _locked(self, mode: int) -> _FileLock:
        return _FileLock(self.root / LOCK_NAME, mode)


def _refresh(path: Path) -> None:
    """Mark a bundle used now: it is not pruned for another ttl_s."""
    try:
        os.utime(path)
    except PermissionError:
        pass  # unpacked by a worker running as another user: used as it is, refreshed by those


class _FileLock:
    """flock on a file: shared by the processes that refresh, exclusive for the pruner."""

    def __init__(self, path: Path, mode: int) -> None:
        self._path, self._mode, self._fd = path, mode, -1

    def __enter__(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except PermissionError:  # made by a worker running as another user: reading will do
            self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        fcntl.flock(self._fd, self._mode)

    def __exit__(self, *_exc: object) -> None:
        os.close(self._fd)  # closing releases the lock
