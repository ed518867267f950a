"""A process's peak memory as the kernel counts it (VmHWM in /proc/<pid>/status)."""

from __future__ import annotations

import os


def peak_rss_kb(pid: int) -> int:
    """Peak resident set of `pid` in KB; 0 once it is gone (or unreadable)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class PeakReader:
    """`peak_rss_kb` for one process, read again on each call with one pread on a kept fd."""

    def __init__(self, pid: int) -> None:
        try:
            self._fd = os.open(f"/proc/{pid}/status", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._fd = -1

    def kb(self) -> int:
        if self._fd < 0:
            return 0
        try:
            text = os.pread(self._fd, 4096, 0)
        except OSError:
            return 0
        at = text.find(b"VmHWM:")
        return int(text[at + 6 : text.index(b"kB", at)]) if at >= 0 else 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
