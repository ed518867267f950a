"""Starting sandbox children: through the shared fork server, or a fresh interpreter each time.

`ForkServer` is the caller's handle on the template process (template.py). One is shared per
calling process (`ForkServer.shared()`), started lazily and restarted when it has died; its
requests are serialised by a lock, so any number of threads may spawn at once. `ExecLauncher`
starts a fresh `python` per child instead: slower, kept to measure the difference.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
from typing import Any, ClassVar, Protocol

from sandbox.cgroup import Cgroup, CgroupParent
from warren.errors import SandboxError

STATUS = struct.Struct(">i")
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BOOT = "import sys; sys.path.insert(0, {path!r}); from sandbox.{module} import {func}; {func}()"


def ready(fd: int, events: int, timeout: float) -> bool:
    """poll(2) for one fd: unlike select(2), fine for fd numbers past 1024 (a busy worker's)."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(max(timeout, 0) * 1000))


class ChildProcess(Protocol):
    """A started sandbox child, as the caller sees it, with the cgroup made for it if any."""

    pid: int
    cgroup: Cgroup | None

    def fileno(self) -> int:
        """An fd that becomes readable once the child has exited."""

    def wait_status(self, timeout: float) -> int | None:
        """The child's wait status once it has exited; None if unknown within `timeout`."""

    def close(self) -> None: ...


class Launcher(Protocol):
    def spawn(
        self, spec: dict[str, Any], ctrl_fd: int, log_fd: int, tmp_fd: int = -1
    ) -> ChildProcess:
        """Start a child per `spec`; `spec["cgroup"]`, when set, asks for a group of its own.

        `tmp_fd`, when given, is the detached mount of the sandbox's /tmp volume."""

    def kill_uid(self, uid: int) -> None:
        """SIGKILL every process owned by `uid` (the sandbox's own), waiting until none is left."""

    def unprivileged_problem(self) -> str | None:
        """Why children could not run as an unprivileged uid here, or None if they can."""

    def walls_problem(self) -> str | None:
        """Why children could not get a private view of files and processes, or None."""


class ForkedChild:
    """A child of the fork server; its wait status arrives on a pipe of its own."""

    def __init__(self, pid: int, status_fd: int, cgroup: Cgroup | None) -> None:
        self.pid = pid
        self.cgroup = cgroup
        self._fd = status_fd
        self._status: int | None = None

    def fileno(self) -> int:
        return self._fd

    def wait_status(self, timeout: float) -> int | None:
        if self._status is None and self._fd >= 0:
            if ready(self._fd, select.POLLIN, timeout):
                data = os.read(self._fd, STATUS.size)
                # An empty read means the fork server died first: the status is lost.
                self._status = STATUS.unpack(data)[0] if len(data) == STATUS.size else None
        return self._status

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class ForkServer:
    """The caller's side of the template process."""

    _shared: ClassVar[ForkServer | None] = None
    _shared_pid: ClassVar[int] = 0
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, python: str = sys.executable, spares: int = 1) -> None:
        self._python = python
        self._spares = spares
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._problem: str | None = None
        self._walls_problem: str | None = "not probed"

    @classmethod
    def shared(cls) -> ForkServer:
        """The fork server of this process (a new one after the caller itself forked)."""
        with cls._shared_lock:
            if cls._shared is None or cls._shared_pid != os.getpid():
                cls._shared, cls._shared_pid = cls(), os.getpid()
                # Stopped when this process exits, not left for the finaliser to find running.
                atexit.register(_close_at_exit, cls._shared, cls._shared_pid)
            return cls._shared

    def spawn(
        self, spec: dict[str, Any], ctrl_fd: int, log_fd: int, tmp_fd: int = -1
    ) -> ForkedChild:
        request = json.dumps({"op": "spawn", "spec": spec}).encode()
        passed = [ctrl_fd, log_fd] + ([tmp_fd] if tmp_fd >= 0 else [])
        reply, fds = self._request(request, passed, expect_fds=1)
        group = reply.get("cgroup")
        return ForkedChild(int(reply["pid"]), fds[0], Cgroup(**group) if group else None)

    def kill_uid(self, uid: int) -> None:
        self._request(json.dumps({"op": "kill_uid", "uid": uid}).encode(), [], expect_fds=0)

    def unprivileged_problem(self) -> str | None:
        with self._lock:
            self._ensure_started()
            return self._problem

    def walls_problem(self) -> str | None:
        with self._lock:
            self._ensure_started()
            return self._walls_problem

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def close(self) -> None:
        """Stop the template process; it kills whatever children it still has."""
        with self._lock:
            self._stop()

    def _request(
        self, msg: bytes, fds: list[int], expect_fds: int
    ) -> tuple[dict[str, Any], list[int]]:
        with self._lock:
            for _attempt in (1, 2):
                sock = self._ensure_started()
                try:
                    socket.send_fds(sock, [msg], fds)
                    data, got, _, _ = socket.recv_fds(sock, 1 << 16, max(expect_fds, 1))
                except OSError:
                    data, got = b"", []
                if data:
                    reply: dict[str, Any] = json.loads(data)
                    if "error" in reply:
                        raise SandboxError(f"fork server refused the request: {reply['error']}")
                    return reply, got
                self._stop()  # it died under us: start a new one and try once more
            raise SandboxError("the sandbox fork server exited while handling a request")

    def _ensure_started(self) -> socket.socket:
        if self._sock is not None and self._proc is not None and self._proc.poll() is None:
            return self._sock
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        boot = _BOOT.format(path=_PACKAGE_PARENT, module="template", func="main")
        try:
            self._proc = subprocess.Popen(
                [self._python, "-I", "-c", boot, str(theirs.fileno()), str(self._spares)],
                pass_fds=[theirs.fileno()],
                env={"PATH": os.defpath},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                cwd="/",
            )
        except OSError as exc:
            ours.close()
            raise SandboxError(f"cannot start the sandbox fork server: {exc}") from None
        finally:
            theirs.close()
        self._sock = ours
        ours.settimeout(60)
        try:
            hello = json.loads(ours.recv(1 << 16) or b"{}")
        except (OSError, ValueError):
            hello = {}
        ours.settimeout(None)
        if "hello" not in hello:
            self._stop()
            raise SandboxError("the sandbox fork server did not start")
        self._problem = hello.get("unprivileged_problem")
        self._walls_problem = hello.get("walls_problem", "the template did not say")
        return ours

    def _stop(self) -> None:
        if self._sock is not None:
            self._sock.close()  # EOF tells the template to kill its children and exit
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


def _close_at_exit(server: ForkServer, owner_pid: int) -> None:
    if os.getpid() == owner_pid:  # not in a forked copy of the owner
        server.close()


class ExecChild:
    """A child started as a fresh interpreter; the caller is its parent."""

    def __init__(self, proc: subprocess.Popen[bytes], cgroup: Cgroup | None) -> None:
        self.pid = proc.pid
        self.cgroup = cgroup
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

    def spawn(
        self, spec: dict[str, Any], ctrl_fd: int, log_fd: int, tmp_fd: int = -1
    ) -> ExecChild:
        boot = _BOOT.format(path=_PACKAGE_PARENT, module="child", func="exec_main")
        group = None
        want = spec.get("cgroup")
        if want:
            group = CgroupParent(**want["parent"]).create(want["memory_bytes"], want["max_pids"])
            spec = {**spec, "cgroup_procs": group.procs_files}
        try:
            proc = subprocess.Popen(
                [self._python, "-I", "-c", boot, json.dumps(spec), str(ctrl_fd), str(log_fd),
                 str(tmp_fd)],
                pass_fds=[ctrl_fd, log_fd] + ([tmp_fd] if tmp_fd >= 0 else []),
                env={"PATH": os.defpath},
                stdin=subprocess.DEVNULL,
                cwd="/",
            )
        except OSError as exc:
            if group is not None:
                group.remove()
            raise SandboxError(f"cannot start a sandbox child: {exc}") from None
        return ExecChild(proc, group)

    def unprivileged_problem(self) -> str | None:
        return None  # each child exposes the interpreter itself (child.exec_main)

    def walls_problem(self) -> str | None:
        if self._walls_problem == "not probed":
            from sandbox.mountwalls import probe

            self._walls_problem = probe()
        return self._walls_problem

    def kill_uid(self, uid: int) -> None:
        boot = f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); "
        boot += f"from sandbox.child import kill_uid; kill_uid({uid})"
        subprocess.run([self._python, "-I", "-c", boot], env={}, cwd="/", check=False)
