"""Removing a sandbox's private tmp dir, even when the caller may not look inside it.

The tmp dir belongs to the sandbox's uid (mode 0700) and so does everything the handler made in
it. Root normally removes it through CAP_DAC_OVERRIDE; a root worker without that capability is
just "others" to those directories, so it first opens each one up (chmod needs only CAP_FOWNER)
and then removes the tree. Standard library only (the template process uses it too).
"""

from __future__ import annotations

import os
import shutil
import tempfile

_OTHERS_RWX = 0o707  # root without CAP_DAC_OVERRIDE is judged by the "others" bits


def tmp_dir_prefix(pid: int | None = None) -> str:
    """Where a caller's sandbox tmp dirs go: `<tmp>/warren-sbx-<caller pid>-`, so that those a
    caller killed outright leaves behind can be told from a live caller's (`sweep_stale`)."""
    return os.path.join(tempfile.gettempdir(), f"warren-sbx-{pid or os.getpid()}-")


def sweep_stale() -> int:
    """Remove the tmp dirs of callers that are gone (its template removes those of its started
    sandboxes; those made ahead and never used are left when a caller is killed outright)."""
    removed = 0
    root = os.path.dirname(tmp_dir_prefix())
    try:
        names = os.listdir(root)
    except OSError:
        return 0
    for name in names:
        parts = name.split("-")
        if len(parts) != 4 or parts[:2] != ["warren", "sbx"] or not parts[2].isdigit():
            continue
        if not os.path.exists(f"/proc/{parts[2]}") and remove_tree(os.path.join(root, name)):
            removed += 1
    return removed


def make_tmp_dir() -> str:
    """A new private tmp dir (0700) for one sandbox of this caller."""
    prefix = tmp_dir_prefix()
    return tempfile.mkdtemp(prefix=os.path.basename(prefix), dir=os.path.dirname(prefix))


def remove_tree(path: str) -> bool:
    """Remove `path` and everything below it; False if some of it had to be left."""
    shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path):
        return True
    _open_up(path)
    shutil.rmtree(path, ignore_errors=True)
    return not os.path.lexists(path)


def _open_up(top: str) -> None:
    """Grant "others" access to `top` and every directory below it, top-down."""
    pending = [top]
    while pending:
        directory = pending.pop()
        try:
            os.chmod(directory, _OTHERS_RWX)  # real directories only: see below
            entries = list(os.scandir(directory))
        except OSError:
            continue
        pending.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
