"""A process's peak memory as the kernel counts it (VmHWM in /proc/<pid>/status)."""

from __future__ import annotations


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
