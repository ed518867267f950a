"""`ExecLauncher`: each sandbox child a fresh interpreter (`python -I -c ...`), no template.

Slower than the fork server by an interpreter start per cold start; kept to measure the
difference, and as the launcher with the fewest moving parts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

from sandbox.cgroup import Cgroup, CgroupParent
from sandbox.forkserver import BOOT, PACKAGE_PARENT
from warren.errors import SandboxError


class ExecChild:
    """A child started as a fresh interpreter; the caller is its parent."""

    def __init__(
        self, proc: subprocess.Popen[bytes], cgroup: Cgroup | None, ctrl: socket.socket, log_r: int
    ) -> None:
        self.pid = proc.pid
        self.cgroup = cgroup
        self.ctrl, self.log_r = ctrl, log_r
        self._proc = proc
        self._pidfd = os.pidfd_open(proc.pid)

    def fileno(self) -> int:
        return self._pidfd

    def wait_status(self, timeout: float) -> int | None:
        try:
            code = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        # Popen gives -signal or the exit code; turn it back into a wait status.
        return (-code) & 0x7F if code < 0 else (code & 0xFF) << 8

    def close(self) -> None:
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1


class ExecLauncher:
    """Starts each child with a fresh interpreter (`python -I -c ...`), no template process."""

    def __init__(self, python: str = sys.executable) -> None:
        self._python = python
        self._walls_problem: str | None = "not probed"

    def spawn(self, spec: dict[str, Any], tmp_fd: int = -1) -> ExecChild:
        boot = BOOT.format(path=PACKAGE_PARENT, module="child", func="exec_main")
        group = None
        want = spec.get("cgroup")
        if want:
            group = CgroupParent(**want["parent"]).create(want["memory_bytes"], want["max_pids"])
            spec = {**spec, "cgroup_procs": group.procs_files}
        ctrl, ctrl_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_r, log_w = os.pipe2(os.O_CLOEXEC)
        fds = [ctrl_child.fileno(), log_w]
        try:
            proc = subprocess.Popen(
                [self._python, "-I", "-c", boot, json.dumps(spec), *map(str, fds), str(tmp_fd)],
                pass_fds=fds + ([tmp_fd] if tmp_fd >= 0 else []),
                env={"PATH": os.defpath},
                stdin=subprocess.DEVNULL,
                cwd="/",
            )
        except OSError as exc:
            ctrl.close()
            os.close(log_r)
            if group is not None:
                group.remove()
            raise SandboxError(f"cannot start a sandbox child: {exc}") from None
        finally:
            ctrl_child.close()
            os.close(log_w)
        return ExecChild(proc, group, ctrl, log_r)

    def unprivileged_problem(self) -> str | None:
        return None  # each child exposes the interpreter itself (child.exec_main)

    def walls_problem(self) -> str | None:
        if self._walls_problem == "not probed":
            from sandbox.mountwalls import probe

            self._walls_problem = probe()
        return self._walls_problem

    def wake(self) -> None:
        pass

    def ahead(self) -> None:
        pass  # nothing is made ahead: each child is a fresh interpreter

    def kill_uid(self, uid: int) -> None:
        boot = f"import sys; sys.path.insert(0, {PACKAGE_PARENT!r}); "
        boot += f"from sandbox.child import kill_uid; kill_uid({uid})"
        subprocess.run([self._python, "-I", "-c", boot], env={}, cwd="/", check=False)
