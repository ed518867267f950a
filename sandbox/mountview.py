"""Make the interpreter reachable for the sandbox uids, in a private mount namespace.

When the caller is root, handlers run as unprivileged uids, which cannot import the standard
library if Python lives under a directory others may not traverse (pyenv under /root, say). The
template process (and everything it forks) then gets a mount namespace of its own in which each
such directory is covered by an empty read-only tmpfs with only the subtree Python needs bound
back in. The caller's view is untouched, and the handlers see nothing else of those directories.
Standard library only (see protocol.py).
"""

from __future__ import annotations

import ctypes
import os
import sys

_CLONE_NEWNS = 0x00020000
_MS_RDONLY, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x1, 0x1000, 0x4000, 0x40000


def needed_paths() -> list[str]:
    paths = {sys.base_prefix, sys.prefix, os.path.dirname(os.__file__)}
    paths.update(p for p in sys.path if p and os.path.isdir(p))
    return sorted(paths)


def blocked_dir(path: str) -> tuple[str, str] | None:
    """The outermost ancestor of `path` that others may not traverse, and its child on the path."""
    parts = os.path.abspath(path).strip("/").split("/")
    current = ""
    for i, part in enumerate(parts[:-1] if len(parts) > 1 else []):
        current += "/" + part
        if not os.stat(current).st_mode & 0o001:
            return current, current + "/" + parts[i + 1]
    return None


def expose_interpreter(paths: list[str] | None = None) -> str | None:
    """Expose `paths` (default: the interpreter's) to every uid; None on success, else why not."""
    if os.geteuid() != 0:
        return None
    paths = paths or needed_paths()
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result: int, what: str) -> None:
        if result != 0:
            raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")

    unshared = False
    try:
        for _ in range(16):  # nested blocked directories are exposed one level per round
            blocked = {b for b in (blocked_dir(p) for p in paths) if b is not None}
            if not blocked:
                return None
            if not unshared:
                check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
                check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "make / private")
                unshared = True
            for top in sorted({t for t, _ in blocked}, key=len):
                keep = sorted(child for t, child in blocked if t == top)
                fds = [os.open(c, os.O_PATH | os.O_CLOEXEC) for c in keep]
                check(libc.mount(b"tmpfs", top.encode(), b"tmpfs", 0, b"mode=0755"), f"tmpfs {top}")
                for child, fd in zip(keep, fds, strict=True):
                    os.mkdir(child, 0o755)
                    source = f"/proc/self/fd/{fd}".encode()
                    check(libc.mount(source, child.encode(), None, _MS_BIND | _MS_REC, None), child)
                    os.close(fd)
                flags = _MS_RDONLY | _MS_BIND | 0x20  # remount read-only (0x20 = MS_REMOUNT)
                check(libc.mount(None, top.encode(), None, flags, None), f"read-only {top}")
        return "directories nest too deep"
    except OSError as exc:
        return f"cannot expose the interpreter to unprivileged uids: {exc}"
