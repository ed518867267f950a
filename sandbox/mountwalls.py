"""A sandbox child's own view of the file system: private /tmp and /dev/shm, its processes only.

Run as root in the child before it drops to its uid. A mount namespace of its own; the whole
tree remounted read-only (one `mount_setattr` with AT_RECURSIVE), so no host directory is
writable; a new procfs with `hidepid=invisible`, so the child sees only its own uid's
processes (each sandbox has a uid of its own); a tmpfs on /dev/shm; the sandbox's tmp dir
bound onto /tmp. The first three do not depend on the function, so a spare does them ahead of
the hand-off (`private_view`); the rest is `sandbox_mounts`. Standard library only.
"""

from __future__ import annotations

import ctypes
import os

_CLONE_NEWNS, _CLONE_NEWNET = 0x00020000, 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
_MNT_DETACH = 0x2
_SYS_MOUNT_SETATTR = 442  # the same number on every architecture (added in 5.12)
_AT_FDCWD, _AT_RECURSIVE, _MOUNT_ATTR_RDONLY = -100, 0x8000, 0x1
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT = 428, 429  # also the same everywhere (5.2)
_OPEN_TREE_CLONE, _AT_EMPTY_PATH, _MOVE_MOUNT_F_EMPTY_PATH = 0x1 | os.O_CLOEXEC, 0x1000, 0x4
_LIBC = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("attr_set", "attr_clr", "propagation", "userns")]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: bytes | None, target: bytes, fstype: bytes | None, flags: int,
           data: bytes | None, what: str) -> None:
    _check(_LIBC.mount(source, target, fstype, flags, data), what)


def private_view() -> None:
    """Own mount namespace, everything read-only, procfs showing only this uid's processes."""
    _check(_LIBC.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None, "make / private")
    attr = _MountAttr(_MOUNT_ATTR_RDONLY, 0, 0, 0)
    flags = _AT_RECURSIVE
    result = _LIBC.syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, b"/", flags, ctypes.byref(attr),
                           ctypes.sizeof(attr))
    _check(result, "mount_setattr(/, read-only, recursive)")
    proc_flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _mount(b"proc", b"/proc", b"proc", proc_flags, b"hidepid=invisible", "procfs hidepid")


def shm(shm_mb: int, remount: bool = False) -> None:
    """A tmpfs of `shm_mb` on /dev/shm (a spare mounts it ahead with its group's memory size;
    the hand-off resizes it if the function's differs)."""
    flags = _MS_NOSUID | _MS_NODEV | (_MS_REMOUNT if remount else 0)
    data = f"size={shm_mb}m,mode=1777".encode()
    _mount(b"tmpfs", b"/dev/shm", b"tmpfs", flags, data, "tmpfs on /dev/shm")


def sandbox_mounts(tmp_dir: str, shm_mb: int, code_dir: str, tmp_fd: int = -1,
                   opt_dir: str | None = None, shm_mounted_mb: int | None = None) -> None:
    """This sandbox's /tmp: its volume (`tmp_fd`, a detached mount, see tmpvolume.py) cloned
    there, else its tmp dir bound there (writable again: a bind keeps the read-only flag); its
    layers (`opt_dir`, merged by the worker) bound read-only on /opt, where Lambda puts them;
    /dev/shm, unless a spare already mounted it at this size (`shm_mounted_mb`)."""
    if opt_dir:
        _mount(opt_dir.encode(), b"/opt", None, _MS_BIND | _MS_REC, None, "bind the layers")
        _mount(None, b"/opt", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY, None, "read-only /opt")
    flags = _MS_NOSUID | _MS_NODEV
    if shm_mounted_mb is not None and code_dir.startswith("/dev/shm/"):
        # The spare's tmpfs covers this code dir: off again, so that it can be opened below.
        _check(_LIBC.umount2(b"/dev/shm", _MNT_DETACH), "umount the spare's /dev/shm")
        shm_mounted_mb = None
    hidden = [d for d in ("/tmp", "/dev/shm") if code_dir.startswith(d + "/")]
    code_fd = os.open(code_dir, os.O_PATH | os.O_CLOEXEC) if hidden else -1
    if shm_mounted_mb is None:
        shm(shm_mb)
    elif shm_mounted_mb != shm_mb:
        shm(shm_mb, remount=True)
    if tmp_fd >= 0:
        clone = _LIBC.syscall(_SYS_OPEN_TREE, tmp_fd, b"", _OPEN_TREE_CLONE | _AT_EMPTY_PATH)
        _check(-1 if clone < 0 else 0, "open_tree(the tmp volume)")
        try:
            moved = _LIBC.syscall(_SYS_MOVE_MOUNT, clone, b"", _AT_FDCWD, b"/tmp",
                                  _MOVE_MOUNT_F_EMPTY_PATH)
            _check(moved, "move_mount(the tmp volume, /tmp)")
        finally:
            os.close(clone)
    else:
        _mount(tmp_dir.encode(), b"/tmp", None, _MS_BIND, None, "bind the tmp dir on /tmp")
        _mount(None, b"/tmp", None, _MS_REMOUNT | _MS_BIND | flags, None, "writable /tmp")
    if code_fd >= 0:
        _show_code_dir(code_fd, code_dir)


def _show_code_dir(code_fd: int, code_dir: str) -> None:
    """A code dir under /tmp or /dev/shm (a local invoke's, a test's) bound back at its path.

    Its mount point is made inside the sandbox's own /tmp, owned by root: the one case where a
    handler's /tmp is not empty at start.
    """
    os.makedirs(code_dir, mode=0o555, exist_ok=True)
    source = f"/proc/self/fd/{code_fd}".encode()
    _mount(source, code_dir.encode(), None, _MS_BIND | _MS_REC, None, f"bind {code_dir}")
    _mount(None, code_dir.encode(), None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY, None, "read-only")
    os.close(code_fd)


def writable(path: str) -> None:
    """`path` writable again inside the read-only tree (for a child without walls)."""
    _mount(path.encode(), path.encode(), None, _MS_BIND, None, f"bind {path}")
    _mount(None, path.encode(), None, _MS_REMOUNT | _MS_BIND, None, f"writable {path}")


def no_network() -> None:
    """A network namespace of its own: a loopback that is down, nothing else."""
    _check(_LIBC.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")


def probe() -> str | None:
    """Whether a child can build these walls here; None if so, else why not (forks to try)."""
    if os.geteuid() != 0:
        return "needs root"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            private_view()
            probe_dir = "/dev/shm"  # any directory will do for the bind
            sandbox_mounts(probe_dir, 1, "/")
            no_network()
            os._exit(0)
        except BaseException as exc:
            os.write(write_end, str(exc).encode(errors="replace")[:500])
            os._exit(1)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        reason = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    return None if status == 0 else reason or f"probe exited with status {status}"
