"""Per-sandbox control groups: a memory ceiling, a process ceiling, a peak reading and a kill.

Each sandbox gets its own group, nested under the caller's own group in each hierarchy (never
moved out of the tree the caller was placed in). cgroup v2 is used when the caller's group
delegates the memory and pids controllers to its children, or can: v2 lets a group hand
controllers to children only while it holds no process itself, so every process of the caller's
group (the caller, its template) first moves into a leaf `warren-main` beside the sandboxes'
groups. Otherwise cgroup v1's memory and pids hierarchies when they are mounted and writable;
otherwise there is no cgroup (rlimits only).
"""

from __future__ import annotations

import errno
import os
import signal
import time
import uuid
from dataclasses import dataclass

_ROOT = "/sys/fs/cgroup"
LEAF = "warren-main"  # where a v2 group's own processes go so that it may delegate
_WANTED = {"memory", "pids"}


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _keyed(path: str, key: str) -> int:
    """A `key value` line of a flat keyed file (memory.events, memory.oom_control)."""
    try:
        for line in _read(path).splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except OSError:
        pass
    return 0


def _words(path: str) -> set[str]:
    try:
        return set(_read(path).split())
    except OSError:
        return set()


def _delegate(group: str, rounds: int = 5) -> None:
    """Empty `group` into its leaf, then enable memory and pids for its children."""
    if os.path.exists(os.path.join(group, "cgroup.type")):  # the root group has none, and
        leaf = os.path.join(group, LEAF)  # is exempt from the no-internal-processes rule
        os.makedirs(leaf, mode=0o755, exist_ok=True)
        for _ in range(rounds):  # a process may fork while its group is being emptied
            pids = _read(os.path.join(group, "cgroup.procs")).split()
            if not pids:
                break
            for pid in pids:
                try:
                    _write(os.path.join(leaf, "cgroup.procs"), pid)
                except ProcessLookupError:
                    pass  # it exited meanwhile
    _write(os.path.join(group, "cgroup.subtree_control"), "+memory +pids")


@dataclass(frozen=True)
class CgroupParent:
    """Where sandbox groups can be created: `version` 1 (memory_dir, pids_dir) or 2 (one dir)."""

    version: int
    memory_dir: str
    pids_dir: str

    @classmethod
    def detect(cls, root: str = _ROOT, self_cgroup: str | None = None) -> CgroupParent | None:
        """The caller's own groups, if sandbox groups can be made below them; else None."""
        if self_cgroup is None:
            try:
                self_cgroup = _read("/proc/self/cgroup")
            except OSError:
                return None
        paths: dict[str, str] = {}
        for line in self_cgroup.splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else ["(v2)"]:
                paths[name] = path
        for candidate in cls._candidates(root, paths):
            if candidate._usable():
                return candidate
        return None

    @classmethod
    def _candidates(cls, root: str, paths: dict[str, str]) -> list[CgroupParent]:
        found = []
        if "(v2)" in paths:
            for mount in (root, os.path.join(root, "unified")):
                v2 = mount + paths["(v2)"].rstrip("/")
                if os.path.exists(os.path.join(v2, "cgroup.subtree_control")):
                    parent = cls._v2_parent(v2)
                    if parent is not None:
                        found.append(parent)
                    break
        if "memory" in paths and "pids" in paths:
            memory = os.path.join(root, "memory") + paths["memory"].rstrip("/")
            pids = os.path.join(root, "pids") + paths["pids"].rstrip("/")
            found.append(cls(1, memory, pids))
        return found

    @classmethod
    def _v2_parent(cls, group: str) -> CgroupParent | None:
        """The v2 group to make sandbox groups in: the caller's, or the one above its leaf."""
        if _WANTED <= _words(os.path.join(group, "cgroup.subtree_control")):
            return cls(2, group, group)
        above = os.path.dirname(group)
        if os.path.basename(group) == LEAF and _WANTED <= _words(
            os.path.join(above, "cgroup.subtree_control")
        ):
            return cls(2, above, above)  # moved into the leaf before (by this or another caller)
        if not _WANTED <= _words(os.path.join(group, "cgroup.controllers")):
            return None  # not ours to enable: the group above did not delegate them
        if not os.access(group, os.W_OK):
            return None
        try:
            _delegate(group)
        except OSError:
            return None  # e.g. EBUSY: a process appeared faster than it could be moved
        return cls(2, group, group)

    def _usable(self) -> bool:
        # (v2's delegation was checked, or made, by _v2_parent.)
        return all(os.access(d, os.W_OK) for d in {self.memory_dir, self.pids_dir})

    def as_dict(self) -> dict[str, object]:
        return {"version": self.version, "memory_dir": self.memory_dir, "pids_dir": self.pids_dir}

    def sweep_stale(self) -> int:
        """Remove empty groups whose creating process is gone (it was killed before it could)."""
        removed = 0
        for d in dict.fromkeys((self.memory_dir, self.pids_dir)):
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                parts = name.split("-")
                if len(parts) != 4 or parts[:2] != ["warren", "sbx"] or not parts[2].isdigit():
                    continue
                if os.path.exists(f"/proc/{parts[2]}"):
                    continue
                try:
                    os.rmdir(os.path.join(d, name))  # refused (EBUSY) while anything is inside
                    removed += 1
                except OSError:
                    pass
        return removed

    def create(self, memory_bytes: int, max_pids: int) -> Cgroup:
        """A new, empty group below this parent with these limits."""
        name = f"warren-sbx-{os.getpid()}-{uuid.uuid4().hex[:10]}"
        dirs = [os.path.join(d, name) for d in dict.fromkeys((self.memory_dir, self.pids_dir))]
        group = Cgroup(self.version, dirs[0], dirs[-1])
        try:
            for d in dirs:
                os.mkdir(d, 0o755)
            if self.version == 2:
                try:
                    _write(os.path.join(group.memory_dir, "memory.swap.max"), "0")
                except OSError:
                    pass  # no such file without swap accounting: then there is no swap to limit
            group.set_limits(memory_bytes, max_pids)
        except OSError:
            group.remove()
            raise
        return group


class Cgroup:
    """One sandbox child's group(s); `procs_files` is what the child writes its pid into."""

    def __init__(self, version: int, memory_dir: str, pids_dir: str, peak_fd: int = -1) -> None:
        self.version = version
        self.memory_dir = memory_dir
        self.pids_dir = pids_dir
        self._peak_fd = peak_fd  # opened ahead by whoever made the group, or on the first read

    def as_dict(self) -> dict[str, object]:
        return {"version": self.version, "memory_dir": self.memory_dir, "pids_dir": self.pids_dir}

    def set_limits(self, memory_bytes: int, max_pids: int) -> None:
        if self.version == 2:
            _write(os.path.join(self.memory_dir, "memory.max"), str(memory_bytes))
        else:
            limit = os.path.join(self.memory_dir, "memory.limit_in_bytes")
            memsw = os.path.join(self.memory_dir, "memory.memsw.limit_in_bytes")
            # v1 insists on limit <= memsw limit at every step, so the order depends on direction.
            files = [limit, memsw] if int(_read(limit)) > memory_bytes else [memsw, limit]
            for path in files:
                if os.path.exists(path):
                    _write(path, str(memory_bytes))
        _write(os.path.join(self.pids_dir, "pids.max"), str(max_pids))

    @property
    def procs_files(self) -> list[str]:
        dirs = dict.fromkeys((self.memory_dir, self.pids_dir))
        return [os.path.join(d, "cgroup.procs") for d in dirs]

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in _read(os.path.join(self.pids_dir, "cgroup.procs")).split()]
        except OSError:
            return []

    def kill_all(self, timeout: float = 5.0) -> bool:
        """SIGKILL every process in the group until it is empty; False if it would not empty."""
        if self.version == 2:
            try:
                _write(os.path.join(self.memory_dir, "cgroup.kill"), "1")
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        procs = os.path.join(self.pids_dir, "cgroup.procs")
        while True:
            try:
                pids = [int(p) for p in _read(procs).split()]
            except OSError:
                return False  # cannot tell: let the caller use its other means
            if not pids:
                return True
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                except PermissionError:
                    return False  # root without CAP_KILL: the uid kill has to do it
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)

    def open_peak(self) -> int:
        """An fd to read the group's peak from (one pread per invocation, no open)."""
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        return os.open(os.path.join(self.memory_dir, name), os.O_RDONLY | os.O_CLOEXEC)

    def peak_bytes(self) -> int:
        """Peak memory charged to the group (pages its processes touched since they joined)."""
        try:
            if self._peak_fd < 0:  # kept open: read once per invocation, so one pread each
                self._peak_fd = self.open_peak()
            return int(os.pread(self._peak_fd, 32, 0))
        except (OSError, ValueError):
            return 0

    def _oom_kills(self) -> int:
        if self.version == 2:
            return _keyed(os.path.join(self.memory_dir, "memory.events"), "oom_kill")
        return _keyed(os.path.join(self.memory_dir, "memory.oom_control"), "oom_kill")

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer struck in this group."""
        return self._oom_kills() > 0

    def close(self) -> None:
        """Close the kept peak fd; the group itself stays."""
        if self._peak_fd >= 0:
            os.close(self._peak_fd)
            self._peak_fd = -1

    def remove(self) -> None:
        self.close()
        for d in dict.fromkeys((self.memory_dir, self.pids_dir)):
            for _ in range(200):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        break
                    time.sleep(0.005)  # the last processes are still being reaped
