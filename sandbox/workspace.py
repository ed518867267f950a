"""A sandbox's workspace: its uid lease, host tmp dir and /tmp volume, made ahead of need.

These outlive one child (Lambda keeps /tmp across resets) and were most of a cold start's own
work in the caller: a uid lease looks up passwd and flocks a file (~0.2 ms), the tmp dir is a
mkdir on the host disk (~0.1 ms), a volume is handed to the uid. So one per kind recently asked
for is prepared ahead by a thread of this process's `WorkspacePool`, woken once a cold start is
over (`want`), so that it does not run during one. A workspace that cannot be prepared ahead is
made by the sandbox itself, with the errors it reports.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sandbox import tmpvolume
from sandbox.tmpdir import make_tmp_dir, remove_tree, sweep_stale
from sandbox.uidpool import UidLease, UidPool


@dataclass(frozen=True)
class Kind:
    uids: UidPool | None  # where the uid is leased from; None: runs as the caller
    volume_mb: int | None  # the /tmp volume's size; None: no volume (no private view)
    # A code dir under /tmp (a local invoke's, a test's) is bound back at its path inside the
    # volume: its mount point (relative to /tmp) made ahead too, not by the child (~0.3 ms).
    mount_point: str | None = None


@dataclass
class Workspace:
    uid: UidLease | None
    tmp_dir: str
    volume: int  # the volume's mount fd, or -1


def prepare(kind: Kind) -> Workspace:
    """A whole workspace of this kind, or OSError (nothing is left behind then)."""
    lease = kind.uids.acquire() if kind.uids is not None else None
    tmp_dir, volume = "", -1
    try:
        tmp_dir = make_tmp_dir()
        if lease is not None:
            os.chown(tmp_dir, lease.uid, lease.uid)
        if kind.volume_mb is not None:
            volume = tmpvolume.shared().take(kind.volume_mb)
            if lease is not None:
                tmpvolume.hand_to(volume, lease.uid)
            if kind.mount_point:  # root's, as the child would have made it (mountwalls.py)
                os.makedirs(f"/proc/self/fd/{volume}/{kind.mount_point}", 0o555, exist_ok=True)
    except BaseException:
        discard(Workspace(lease, tmp_dir, volume))
        raise
    return Workspace(lease, tmp_dir, volume)


def discard(workspace: Workspace) -> None:
    if workspace.uid is not None:
        workspace.uid.release()
    tmpvolume.release(workspace.volume)
    if workspace.tmp_dir:
        remove_tree(workspace.tmp_dir)


MAX_READY = 2  # each holds a uid lease, a tmp dir, a volume and its loop device


class WorkspacePool:
    """One workspace ready per kind recently asked for (at most MAX_READY in all); `take` is a
    pop, `want` wakes the filler.

    The filler also runs what else is to be made ready once a cold start is over (the
    launcher's next spare): the thread that did the cold start returns at once."""

    def __init__(self) -> None:
        self._closed = False
        self._ready: dict[Kind, Workspace] = {}
        self._wanted: set[Kind] = set()
        self._tasks: list[Callable[[], None]] = []
        self._failed: set[Kind] = set()  # made on demand from now on (the sandbox says why)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def take(self, kind: Kind) -> Workspace | None:
        with self._lock:
            return self._ready.pop(kind, None)

    def want(self, kind: Kind | None, then: Callable[[], None] | None = None) -> None:
        """Have one of `kind` ready for the next cold start, and run `then` first, in the
        filler thread (call once this cold start is over)."""
        with self._lock:
            if self._closed:
                return
            if then is not None and then not in self._tasks:
                self._tasks.append(then)
            if kind is not None and kind not in self._ready and kind not in self._failed:
                self._wanted.add(kind)
            if not self._tasks and not self._wanted:
                return
            self._wake.notify()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._fill, name="warren-workspaces", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        """Let go of what was made ahead (at exit: the tmp dirs are not left behind)."""
        with self._lock:
            self._closed = True
            ready, self._ready = list(self._ready.values()), {}
            self._wanted.clear()
            self._tasks.clear()
            thread = self._thread
        for workspace in ready:
            discard(workspace)
        if thread is not None:
            thread.join(timeout=2)  # what it is making now, it discards itself

    def _fill(self) -> None:
        sweep_stale()  # once per process
        while True:
            with self._lock:
                while not self._wanted and not self._tasks and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                tasks, self._tasks = self._tasks, []
                kind = self._wanted.pop() if self._wanted else None
            for task in tasks:
                try:
                    task()
                except Exception:  # noqa: BLE001  (the next cold start makes what it needs)
                    pass
            if kind is None:
                continue
            try:
                workspace = prepare(kind)
            except Exception:  # noqa: BLE001  (OSError, mkfs failing, ...: the sandbox says why)
                with self._lock:
                    self._failed.add(kind)
                continue
            with self._lock:
                if self._closed:
                    stale: Workspace | None = workspace
                else:
                    stale = self._ready.pop(kind, None)  # cannot happen with one filler
                    self._ready[kind] = workspace
                    if len(self._ready) > MAX_READY:  # the kind asked for longest ago goes
                        stale = self._ready.pop(next(iter(self._ready)))
            if stale is not None:
                discard(stale)


_shared = WorkspacePool()
_shared_pid = os.getpid()


def shared() -> WorkspacePool:
    """This process's pool (a fresh one after a fork: threads and leases do not carry over)."""
    global _shared, _shared_pid
    if _shared_pid != os.getpid():
        _shared, _shared_pid = WorkspacePool(), os.getpid()
    return _shared


def _close_at_exit() -> None:
    if _shared_pid == os.getpid():  # not in a forked copy
        _shared.close()


atexit.register(_close_at_exit)
