"""Unprivileged uids, one per live sandbox on the machine, leased with flock'ed lock files.

A uid of its own makes RLIMIT_NPROC count exactly the sandbox's processes and threads, and lets
a helper that becomes that uid kill(-1) all of them, however they detached. A lease is an
exclusive flock on `<lock_dir>/<uid>.lock`, so concurrent workers on one machine never share a
uid and a crashed worker's leases free themselves.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import threading
from typing import ClassVar

DEFAULT_BASE = 810_000
DEFAULT_SIZE = 60_000
DEFAULT_LOCK_DIR = "/run/warren/sandbox-uids"
UID_MAX = 2**32 - 2  # (uid_t)-1 means "unchanged" to setresuid


class UidsExhausted(OSError):
    """Every uid of the range is leased: an infrastructure limit, not a missing privilege."""


class UidLease:
    def __init__(self, uid: int, fd: int) -> None:
        self.uid = uid
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the fd drops the flock
            self._fd = -1


class UidPool:
    """Hands out uids in [base, base + size) that no other process on the machine holds."""

    _shared: ClassVar[dict[tuple[int, int], UidPool]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, base: int = DEFAULT_BASE, size: int = DEFAULT_SIZE, lock_dir: str = DEFAULT_LOCK_DIR
    ) -> None:
        self.base, self.size, self.lock_dir = base, size, lock_dir
        self._lock = threading.Lock()
        self._next = 0

    @classmethod
    def shared(cls, base: int = DEFAULT_BASE, size: int = DEFAULT_SIZE) -> UidPool:
        """This process's pool for the range (one per range, so leases rotate through it)."""
        with cls._shared_lock:
            pool = cls._shared.get((base, size))
            if pool is None:
                pool = cls._shared[(base, size)] = cls(base, size)
            return pool

    def acquire(self) -> UidLease:
        os.makedirs(self.lock_dir, mode=0o700, exist_ok=True)
        with self._lock:
            start = self._next
        for i in range(self.size):
            offset = (start + i) % self.size
            uid = self.base + offset
            if _is_named_user(uid):  # looked up each time: passwd may gain users meanwhile
                continue
            fd = os.open(os.path.join(self.lock_dir, f"{uid}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            with self._lock:
                self._next = (offset + 1) % self.size
            return UidLease(uid, fd)
        raise UidsExhausted(f"all {self.size} sandbox uids from {self.base} are in use")


def _is_named_user(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True
