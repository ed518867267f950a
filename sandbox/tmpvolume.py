"""A sandbox's /tmp as a file system of its own, capped at the function's ephemeral storage.

Each volume is an ext4 image on the host disk (sparse, no journal), attached to a loop device
that frees itself when unmounted (LO_FLAGS_AUTOCLEAR), mounted detached (`fsopen`/`fsmount`) and
held by the caller as one mount fd; the image is unlinked at once, so the space goes back when
the last mount goes. The child clones that mount onto its /tmp (`open_tree` + `move_mount`, 0.07
ms). Its page cache is charged to the sandbox's memory cgroup but reclaimable, so a 128 MB
function fills its 512 MB /tmp, and writing past the cap is ENOSPC (measured: 128 MB cgroup,
~500 MB written, then ENOSPC). A tmpfs would count against memory; this kernel has no quotas.

Making one costs ~2 ms (a copy of a pristine image's few metadata extents, the loop ioctls, the
mount), so a pool keeps volumes of recently used sizes ready, refilled by a background thread.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
import subprocess
import threading
from collections import defaultdict
from collections.abc import Callable

from warren.errors import InvalidParameter

MB = 1 << 20
DEFAULT_MB, MIN_MB, MAX_MB = 512, 512, 10240
_DIR = "/var/tmp/warren-volumes"
_LOOP_CTL_GET_FREE, _LOOP_CONFIGURE, _LO_FLAGS_AUTOCLEAR = 0x4C82, 0x4C0A, 4
_SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 430, 431, 432
_FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 1, 6
_MOUNT_ATTR_NOSUID, _MOUNT_ATTR_NODEV = 0x2, 0x4
_LIBC = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def image_mb(cap_mb: int) -> int:
    """The image's size: the cap plus part of ext4's own metadata (~2.5 %), so that a little
    under `cap_mb` is usable (507 MB of 512, as Lambda's /tmp shows a little under its size)."""
    return cap_mb + cap_mb // 64


def _pristine(cap_mb: int) -> str:
    """An empty file system image of this size, made once (mkfs ~10 ms) and copied after."""
    path = os.path.join(_DIR, f"pristine-{cap_mb}.img")
    if os.path.exists(path):
        return path
    os.makedirs(_DIR, mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "wb") as f:
        f.truncate(image_mb(cap_mb) * MB)
    argv = ["mkfs.ext4", "-q", "-F", "-m", "0", "-i", "65536", "-O",
            "^has_journal,^resize_inode", "-E", "lazy_itable_init=1,nodiscard", tmp]
    subprocess.run(argv, check=True, capture_output=True,
                   env={"PATH": "/usr/sbin:/sbin:/usr/bin:/bin"})
    os.rename(tmp, path)  # atomic: another worker may have made the same one meanwhile
    return path


def _copy_sparse(src_path: str, dst_path: str) -> None:
    src = os.open(src_path, os.O_RDONLY | os.O_CLOEXEC)
    dst = os.open(dst_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        size = os.fstat(src).st_size
        os.ftruncate(dst, size)
        offset = 0
        while offset < size:
            try:
                data = os.lseek(src, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: nothing but a hole up to the end
                break
            hole = os.lseek(src, data, os.SEEK_HOLE)
            while data < hole:
                data += os.copy_file_range(src, dst, hole - data, data, data)
            offset = hole
    finally:
        os.close(src)
        os.close(dst)


def _attach_loop(image: str) -> tuple[str, int]:
    """Attach `image` to a free loop device that detaches itself once unmounted.

    Returns the device and an open fd of it: with autoclear the device lets go of the image at
    its last close, so that fd must stay open until the file system is mounted."""
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        with open("/dev/loop-control", "rb", buffering=0) as control:
            for _ in range(16):  # another process may take the free device first
                number = fcntl.ioctl(control, _LOOP_CTL_GET_FREE)
                device = f"/dev/loop{number}"
                loop = os.open(device, os.O_RDWR | os.O_CLOEXEC)
                # struct loop_config: fd, block_size, loop_info64 (lo_flags at 52), reserved
                config = bytearray(304)
                struct.pack_into("=II", config, 0, backing, 0)
                struct.pack_into("=I", config, 8 + 52, _LO_FLAGS_AUTOCLEAR)
                try:
                    fcntl.ioctl(loop, _LOOP_CONFIGURE, bytes(config))
                    return device, loop
                except OSError as exc:
                    os.close(loop)
                    if exc.errno != 16:  # EBUSY: taken meanwhile, try the next free one
                        raise
        raise OSError(16, "no free loop device after 16 tries")
    finally:
        os.close(backing)


def _mount_detached(device: str) -> int:
    fs = _check(_LIBC.syscall(_SYS_FSOPEN, b"ext4", 1), "fsopen(ext4)")
    try:
        _check(_LIBC.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_SET_STRING, b"source",
                             device.encode(), 0), f"fsconfig source={device}")
        _check(_LIBC.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0),
               "fsconfig create")
        attrs = _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV
        return _check(_LIBC.syscall(_SYS_FSMOUNT, fs, 1, attrs), "fsmount")
    finally:
        os.close(fs)


def make(cap_mb: int) -> int:
    """A fresh empty volume of `cap_mb`: its detached mount's fd (root-owned, 0700)."""
    pristine = _pristine(cap_mb)
    image = os.path.join(_DIR, f"vol-{os.getpid()}-{threading.get_ident()}-{os.urandom(4).hex()}")
    try:
        _copy_sparse(pristine, image)
        device, loop = _attach_loop(image)
    finally:
        if os.path.exists(image):
            os.unlink(image)  # the loop device holds it open; gone with the last mount
    try:
        fd = _mount_detached(device)
    finally:
        os.close(loop)
    root = f"/proc/self/fd/{fd}"
    os.rmdir(f"{root}/lost+found")  # empty at start
    # A first directory costs a fresh file system ~0.5 ms (its bitmaps and inode table read
    # through the loop device); paid here, not by a child that makes its code dir's mount point.
    os.mkdir(f"{root}/.warm")
    os.rmdir(f"{root}/.warm")
    os.chmod(root, 0o700)
    return fd


def hand_to(fd: int, uid: int) -> None:
    os.chown(f"/proc/self/fd/{fd}", uid, uid)


def check_size(cap_mb: int) -> int:
    if not isinstance(cap_mb, int) or not MIN_MB <= cap_mb <= MAX_MB:
        raise InvalidParameter(
            f"ephemeral storage must be a whole number of MB from {MIN_MB} to {MAX_MB}: {cap_mb!r}"
        )
    return cap_mb


def attach(cap_mb: int, uid: int | None, say: Callable[[str], None]) -> int:
    """A volume for one sandbox, its root handed to `uid`; -2 (and said once) if none can be."""
    try:
        fd = shared().take(cap_mb)
    except (OSError, subprocess.CalledProcessError) as exc:
        say(f"/tmp is not capped at the ephemeral storage setting ({exc})")
        return -2
    if uid is not None:
        hand_to(fd, uid)
    return fd


def release(fd: int) -> int:
    if fd >= 0:
        os.close(fd)  # the file system goes with the last mount of it (a child may still hold one)
    return -1


class VolumePool:
    """Volumes made ahead per size; `take` is an fd pop when one is ready."""

    def __init__(self, ready: int = 2) -> None:
        self._ready = ready
        self._volumes: dict[int, list[int]] = defaultdict(list)
        self._lock = threading.Lock()
        self._wanted = threading.Condition(self._lock)
        self._sizes: set[int] = set()
        self._thread: threading.Thread | None = None

    def take(self, cap_mb: int) -> int:
        with self._lock:
            ready = self._volumes[cap_mb]
            fd = ready.pop() if ready else -1
            self._sizes.add(cap_mb)
            self._wanted.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._refill, name="warren-tmp-volumes",
                                                daemon=True)
                self._thread.start()
        return fd if fd >= 0 else make(cap_mb)

    def _refill(self) -> None:
        while True:
            with self._lock:
                short = [s for s in self._sizes if len(self._volumes[s]) < self._ready]
                if not short:
                    self._wanted.wait()
                    continue
            try:
                fd = make(short[0])
            except OSError:
                with self._lock:
                    self._sizes.discard(short[0])  # made on demand from now on, or refused
                continue
            with self._lock:
                self._volumes[short[0]].append(fd)


_shared = VolumePool()
_shared_pid = os.getpid()


def shared() -> VolumePool:
    """This process's pool (a fresh one after a fork: threads and fds do not carry over)."""
    global _shared, _shared_pid
    if _shared_pid != os.getpid():
        _shared, _shared_pid = VolumePool(), os.getpid()
    return _shared
