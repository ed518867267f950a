"""What a sandbox is held to, and which of it this caller can actually enforce.

`Isolation` holds the knobs beyond Lambda's memory and timeout (all with Lambda's values by
default) and chooses the mechanisms: a cgroup where one can be made, else rlimits; a uid of the
sandbox's own when the caller is root holding CAP_SETUID, CAP_SETGID and CAP_CHOWN. `Enforcement`
says what was chosen and lists what is not enforced, naming the missing privilege;
`Isolation.resolve` logs that list once per process, so an operator sees it.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from sandbox import capabilities, netwall
from sandbox.capabilities import CAP_CHOWN, CAP_SETGID, CAP_SETUID
from sandbox.cgroup import CgroupParent
from sandbox.forkserver import Launcher
from sandbox.uidpool import DEFAULT_BASE, DEFAULT_SIZE, UID_MAX, UidPool
from warren.errors import ConfigError, SandboxError

log = logging.getLogger("sandbox")

# Under RLIMIT_AS the child may map what it has already (the interpreter, libraries) plus the
# function's memory plus this much: arena and thread-stack reservations that use no memory.
AS_HEADROOM_MB = 64


@dataclass(frozen=True)
class Enforcement:
    memory: str  # "cgroup-v1", "cgroup-v2" or "rlimit-as"
    processes: str  # "cgroup-pids+rlimit-nproc", "cgroup-pids", "rlimit-nproc" or "none"
    kill: str  # "cgroup+uid", "cgroup", "uid" or "process-group"
    user: str  # "own-uid" (a uid of its own per sandbox) or "caller"
    unenforced: tuple[str, ...] = ()
    view: str = "shared"  # "private": own mounts, read-only tree, /tmp, /dev/shm, own processes
    network: str = "open"  # "deny-list": the fleet's services and WARREN_SANDBOX_DENY refused

    def describe(self) -> str:
        text = (
            f"memory={self.memory} processes={self.processes} kill={self.kill} user={self.user}"
            f" view={self.view} network={self.network}"
        )
        if self.unenforced:
            text += "; NOT enforced: " + "; ".join(self.unenforced)
        return text


@dataclass
class Isolation:
    """Knobs and mechanisms; `None` means: decide from the caller's privileges."""

    use_cgroups: bool | None = None
    own_uid: bool | None = None
    max_procs: int = 1024  # Lambda's processes + threads
    max_open_files: int = 1024
    max_file_mb: int | None = None  # per-file ceiling; None: the function's ephemeral storage
    log_cap_bytes: int = 1 << 20
    init_timeout_s: float = 10.0  # Lambda's on-demand init limit
    uid_base: int = DEFAULT_BASE  # sandbox uids are [uid_base, uid_base + uid_count)
    uid_count: int = DEFAULT_SIZE
    launcher: Launcher | None = None
    # Addresses handlers may not reach (None: no network wall asked for; from_environ sets it).
    deny: tuple[netwall.Deny, ...] | None = None
    walls: bool | None = None  # private view of files and processes; None: where possible
    uid_pool: UidPool | None = None
    cgroup_parent: CgroupParent | None = field(default=None, repr=False)

    _warned: ClassVar[set[str]] = set()
    _warned_lock: ClassVar[threading.Lock] = threading.Lock()
    _detected: ClassVar[tuple[CgroupParent | None] | None] = None
    _caps: ClassVar[int | None] = None
    _resolved: ClassVar[weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Any]]] = (
        weakref.WeakKeyDictionary()
    )

    def __post_init__(self) -> None:
        if not 1 <= self.uid_base or self.uid_count < 1:
            raise ConfigError(f"sandbox uid range must be positive: {self._range()}")
        if self.uid_base + self.uid_count - 1 > UID_MAX:
            raise ConfigError(f"sandbox uid range {self._range()} ends past uid {UID_MAX}")

    def _range(self) -> str:
        return f"{self.uid_base}..{self.uid_base + self.uid_count - 1}"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Isolation:
        """Read at the CLI/worker edge: WARREN_SANDBOX_UID_BASE and WARREN_SANDBOX_UID_COUNT.

        Workers on one node that do not share the uid lease directory (containers without the
        shared volume) must get disjoint ranges, or their sandboxes may share a uid.
        """
        numbers = []
        for name, default in (
            ("WARREN_SANDBOX_UID_BASE", DEFAULT_BASE),
            ("WARREN_SANDBOX_UID_COUNT", DEFAULT_SIZE),
        ):
            raw = environ.get(name, "").strip() or str(default)
            try:
                numbers.append(int(raw))
            except ValueError:
                raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
        return cls(uid_base=numbers[0], uid_count=numbers[1], deny=tuple(deny_list(environ)))

    def pool(self) -> UidPool:
        """Where this isolation's sandbox uids are leased from."""
        return self.uid_pool or UidPool.shared(self.uid_base, self.uid_count)

    def resolve(self, launcher: Launcher) -> tuple[Enforcement, CgroupParent | None, bool]:
        """(what is enforced, where to make cgroups or None, whether to use an own uid).

        Decided once per process for the same knobs and launcher (each input is read once
        per process already), so that a cold start does not decide it again."""
        key = (self.use_cgroups, self.own_uid, self.walls, self.deny, self.uid_base,
               self.uid_count, self.cgroup_parent)
        per_launcher = self._resolved.setdefault(launcher, {})
        resolved = per_launcher.get(key)
        if resolved is None:
            resolved = per_launcher[key] = self._resolve(launcher)
        return resolved

    def _resolve(self, launcher: Launcher) -> tuple[Enforcement, CgroupParent | None, bool]:
        root = os.geteuid() == 0
        own_uid = root if self.own_uid is None else self.own_uid
        if own_uid and not root:
            own_uid = False
        why_not_uid = "needs root"
        if own_uid:
            lacking = capabilities.missing((CAP_SETUID, CAP_SETGID, CAP_CHOWN), self._cap_mask())
            if lacking:
                own_uid = False
                why_not_uid = (
                    f"the worker is root without {', '.join(lacking)}, needed to switch each "
                    "sandbox to a uid of its own and hand it its tmp dir"
                )
        if own_uid:
            problem = launcher.unprivileged_problem()
            if problem is not None:
                own_uid, why_not_uid = False, problem
        parent = self.cgroup_parent
        if parent is None and self.use_cgroups is not False:
            parent = self._detect_cgroups()
        if self.use_cgroups is False:
            parent = None
        enforcement = _enforcement(parent.version if parent else None, own_uid, why_not_uid)
        enforcement = self._walls(enforcement, launcher, own_uid)
        self._warn_once(enforcement)
        return enforcement, parent, own_uid

    def _walls(self, enforcement: Enforcement, launcher: Launcher, own_uid: bool) -> Enforcement:
        """Add the walls between tenants and the fleet that can be built here, and say which not."""
        down = list(enforcement.unenforced)
        view, network = "shared", "open"
        if self.walls is not False:
            problem = launcher.walls_problem() if own_uid else "needs a uid of its own"
            if problem is None:
                view = "private"
            else:
                down.append(f"private /tmp, /dev/shm, read-only files, own processes ({problem})")
        if self.deny is not None:
            problem = "needs a uid of its own"
            if own_uid:
                last = self.uid_base + self.uid_count - 1
                problem = netwall.install(self.uid_base, last, list(self.deny))
            if problem is None:
                network = "deny-list"
            else:
                down.append(f"handlers can reach the fleet's Redis/RabbitMQ ({problem})")
        return replace(enforcement, view=view, network=network, unenforced=tuple(down))

    def without_own_uid(self, enforcement: Enforcement, why: str) -> Enforcement:
        """What is left when a uid of its own turns out impossible at run time (said once)."""
        version = int(enforcement.memory[-1]) if enforcement.memory.startswith("cgroup") else None
        degraded = _enforcement(version, False, why)
        walls = "private /tmp, /dev/shm, own processes and the network wall (need a uid of its own)"
        degraded = replace(degraded, unenforced=(*degraded.unenforced, walls))
        self._warn_once(degraded)
        return degraded

    @classmethod
    def _cap_mask(cls) -> int:
        if cls._caps is None:  # read once per process: a worker's capabilities do not change
            cls._caps = capabilities.effective()
        return cls._caps

    @classmethod
    def _detect_cgroups(cls) -> CgroupParent | None:
        if cls._detected is None:
            cls._detected = (CgroupParent.detect(),)
        return cls._detected[0]

    def rlimits(
        self, memory_mb: int, storage_mb: int, own_uid: bool, cgroup: bool
    ) -> dict[str, int]:
        """The rlimits a child sets on itself: files, file size (its /tmp's cap unless set), no
        core dumps; processes when it has a uid of its own; address space when no cgroup holds
        its memory."""
        limits = {
            "nofile": self.max_open_files,
            "fsize": (self.max_file_mb or storage_mb) * 1024 * 1024,
            "core": 0,
        }
        if own_uid:
            limits["nproc"] = self.max_procs
        if not cgroup:
            limits["as"] = (memory_mb + AS_HEADROOM_MB) * 1024 * 1024
        return limits

    def walls_spec(self, enforcement: Enforcement, network: str, memory_mb: int) -> dict[str, Any]:
        """What a child builds before it drops to its uid (see child._isolate)."""
        private = enforcement.view == "private"
        if network == "none" and not private:
            # Fail closed: a function that asked for no network never runs with one.
            raise SandboxError(
                f"--network none cannot be built here ({enforcement.describe()}): the function "
                "is not run (its sandbox needs root and namespaces)"
            )
        return {"view": private, "shm_mb": memory_mb, "network": network}

    @classmethod
    def say_once(cls, text: str) -> None:
        with cls._warned_lock:
            if text in cls._warned:
                return
            cls._warned.add(text)
        log.warning("sandbox: %s", text)

    @classmethod
    def _warn_once(cls, enforcement: Enforcement) -> None:
        if not enforcement.unenforced:
            return
        text = enforcement.describe()
        with cls._warned_lock:
            if text in cls._warned:
                return
            cls._warned.add(text)
        log.warning("sandbox limits: %s", text)


def _enforcement(cgroup_version: int | None, own_uid: bool, why_not_uid: str) -> Enforcement:
    unenforced = []
    memory = f"cgroup-v{cgroup_version}" if cgroup_version else "rlimit-as"
    if not cgroup_version:
        unenforced.append("memory is an address-space rlimit, not a cgroup (none writable)")
    procs = [p for p, on in (("cgroup-pids", cgroup_version), ("rlimit-nproc", own_uid)) if on]
    if not procs:
        unenforced.append("process limit (needs a writable pids cgroup or a uid of its own)")
    kill = "+".join(k for k, on in (("cgroup", cgroup_version), ("uid", own_uid)) if on)
    if not kill:
        unenforced.append(
            "descendants that leave the process group (setsid) survive a kill "
            "(needs a writable cgroup or a uid of its own)"
        )
    if not own_uid:
        unenforced.append(f"handlers run as the caller's own user ({why_not_uid})")
    return Enforcement(
        memory=memory,
        processes="+".join(procs) or "none",
        kill=kill or "process-group",
        user="own-uid" if own_uid else "caller",
        unenforced=tuple(unenforced),
    )


def deny_list(environ: Mapping[str, str]) -> list[netwall.Deny]:
    """The fleet's own service addresses plus WARREN_SANDBOX_DENY (default: the metadata one)."""
    urls = [
        environ.get("WARREN_AMQP_URL", "").strip() or "amqp://127.0.0.1:5672/",
        environ.get("WARREN_REDIS_URL", "").strip() or "redis://127.0.0.1:6379/0",
    ]
    denied = netwall.from_urls(urls)
    extra = environ.get("WARREN_SANDBOX_DENY")
    entries = [netwall.METADATA] if extra is None else [e for e in extra.split(",") if e.strip()]
    for entry in entries:
        denied.extend(netwall.parse(entry))
    return denied
