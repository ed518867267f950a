"""CPU time per process of a `warren up` tree, by role, read from /proc (Linux): what a
fleet benchmark spends where, since all of it shares the same cores."""

from __future__ import annotations

import os

Snapshot = dict[int, tuple[str, float]]  # pid -> (role, CPU seconds so far)


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _role_of_child(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return "other"
    return next((a.decode() for a in argv if a in (b"router", b"worker", b"poller")), "other")


def fleet_cpu(root: int) -> Snapshot:
    """Each process of the `warren up` tree at `root` by role (router, worker, poller; the
    worker's descendants are its sandboxes), and Redis and RabbitMQ, with its CPU so far."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            fields = _stat(pid)
            with open(f"/proc/{pid}/comm") as f:
                names[pid] = f.read().strip()
        except OSError:
            continue
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    roles = {pid: _role_of_child(pid) for pid, parent in parents.items() if parent == root}
    out: Snapshot = {}
    for pid in parents:
        node, role = pid, None
        while node in parents and role is None:
            role = roles.get(node)
            node = parents[node]
        if role is not None:
            out[pid] = ("sandbox" if role == "worker" and pid not in roles else role, cpu[pid])
        elif names.get(pid) == "redis-server":
            out[pid] = ("redis", cpu[pid])
        elif names.get(pid) == "beam.smp":
            out[pid] = ("rabbitmq", cpu[pid])
    return out


def cpu_us_per_record(before: Snapshot, after: Snapshot, records: int) -> dict[str, float]:
    """CPU microseconds per record by role between two snapshots; a process that started in
    between counts whole, one that ended in between is left out (its last CPU is unknown)."""
    spent: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        spent[role] = spent.get(role, 0.0) + seconds - before.get(pid, (role, 0.0))[1]
    return {role: round(1e6 * s / max(records, 1), 1) for role, s in sorted(spent.items())}
