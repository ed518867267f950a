"""Which Linux capabilities this process holds, read from /proc/self/status (CapEff).

A root worker in a container usually holds only some of root's capabilities; each sandbox
mechanism needs particular ones, so the choice of mechanisms asks here instead of trusting
`geteuid() == 0`.
"""

from __future__ import annotations

# Bit numbers from linux/capability.h.
CAP_CHOWN = 0
CAP_DAC_OVERRIDE = 1
CAP_KILL = 5
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SYS_ADMIN = 21

NAMES = {
    CAP_CHOWN: "CAP_CHOWN",
    CAP_DAC_OVERRIDE: "CAP_DAC_OVERRIDE",
    CAP_KILL: "CAP_KILL",
    CAP_SETGID: "CAP_SETGID",
    CAP_SETUID: "CAP_SETUID",
    CAP_SYS_ADMIN: "CAP_SYS_ADMIN",
}


def effective(status_text: str | None = None) -> int:
    """The effective capability mask (all bits set if /proc cannot be read: assume root's)."""
    if status_text is None:
        try:
            with open("/proc/self/status") as f:
                status_text = f.read()
        except OSError:
            return -1
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return -1


def missing(wanted: tuple[int, ...], mask: int | None = None) -> list[str]:
    """Names of the capabilities in `wanted` that the mask (default: this process's) lacks."""
    have = effective() if mask is None else mask
    return [NAMES.get(cap, f"capability {cap}") for cap in wanted if not have >> cap & 1]
