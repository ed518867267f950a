"""Helpers for the sandbox tests: code dirs, privilege checks, process inspection."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

HANDLERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "handlers", "sandbox")
IS_ROOT = os.geteuid() == 0

requires_root = pytest.mark.skipif(
    not IS_ROOT, reason="needs root: handlers run as their own uid only when the caller is root"
)


def cgroup_available() -> bool:
    from sandbox.cgroup import CgroupParent

    return CgroupParent.detect() is not None


requires_cgroup = pytest.mark.skipif(
    not cgroup_available(), reason="needs a writable cgroup (v2 with memory+pids, or v1)"
)


@contextmanager
def code_dir(files: dict[str, str]) -> Iterator[str]:
    """A world-readable code directory holding `files`, removed afterwards."""
    path = tempfile.mkdtemp(prefix="warren-test-code-")
    os.chmod(path, 0o755)
    try:
        for name, text in files.items():
            with open(os.path.join(path, name), "w") as f:
                f.write(text)
            os.chmod(os.path.join(path, name), 0o644)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def live(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_gone(pids: list[int], within_s: float = 5.0) -> list[int]:
    """Wait for the processes to disappear; return those still alive after `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        left = [p for p in pids if live(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def processes_of_uid(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            found.append(int(entry))
                        break
        except OSError:
            continue
    return [p for p in found if live(p)]
