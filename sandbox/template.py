"""The template process (fork server): a warm interpreter that forks sandbox children on request.

Started once per calling process with the runtime already imported, so a new sandbox costs a
fork instead of an interpreter start. It is the children's subreaper: it reaps every process that
ends up orphaned below it and reports each sandbox child's wait status on a pipe of that child's
own. Requests arrive as JSON datagrams on a SOCK_SEQPACKET socket, with fds as SCM_RIGHTS.
Standard library only (see protocol.py).
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import shutil
import signal
import socket
import struct
import sys
import time
from typing import Any

import sandbox.child as child
import sandbox.runtime  # noqa: F401  (imported here so every child starts with it loaded)
from sandbox.mountview import expose_interpreter

STATUS = struct.Struct(">i")
_PR_SET_CHILD_SUBREAPER = 36


class Template:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._children: dict[int, int] = {}  # pid -> write end of its status pipe
        self._specs: dict[int, dict[str, Any]] = {}  # pid -> its spec, to clean up after a caller
        self._wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def run(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self._sock.fileno(), self._wake_r], [], [])
            except InterruptedError:
                continue
            if self._wake_r in ready:
                while True:
                    try:
                        os.read(self._wake_r, 512)
                    except BlockingIOError:
                        break
                self._reap(block_for=None)
            if self._sock.fileno() in ready and not self._serve_one():
                self._shutdown()
                return

    def _serve_one(self) -> bool:
        msg, fds, _, _ = socket.recv_fds(self._sock, 1 << 16, 4)
        if not msg:
            return False
        request: dict[str, Any] = json.loads(msg)
        if request["op"] == "spawn":
            self._spawn(request["spec"], fds[0], fds[1])
        elif request["op"] == "kill_uid":
            self._kill_uid(int(request["uid"]))
        else:
            self._sock.send(json.dumps({"error": f"unknown op {request['op']!r}"}).encode())
        return True

    def _spawn(self, spec: dict[str, Any], ctrl_fd: int, log_fd: int) -> None:
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            child.enter(spec, ctrl_fd, log_fd, parent)
        os.close(ctrl_fd)
        os.close(log_fd)
        self._children[pid] = status_w
        self._specs[pid] = spec
        socket.send_fds(self._sock, [json.dumps({"pid": pid}).encode()], [status_r])
        os.close(status_r)

    def _kill_uid(self, uid: int) -> None:
        helper = os.fork()
        if helper == 0:
            child.kill_uid(uid)
        # Keep reaping while the helper works: kill(-1) counts zombies until they are collected.
        status = self._reap(block_for=helper)
        self._sock.send(json.dumps({"status": status}).encode())

    def _reap(self, block_for: int | None) -> int:
        while True:
            try:
                pid, status = os.waitpid(-1, 0 if block_for is not None else os.WNOHANG)
            except ChildProcessError:
                return -1
            if pid == 0:
                return -1
            self._specs.pop(pid, None)
            wfd = self._children.pop(pid, None)
            if wfd is not None:
                try:
                    os.write(wfd, STATUS.pack(status))
                except OSError:
                    pass  # the caller stopped listening (it closed the sandbox, or died)
                os.close(wfd)
            if pid == block_for:
                return status

    def _shutdown(self) -> None:
        """The caller is gone: kill what its live sandboxes started and remove what they made."""
        specs = list(self._specs.values())
        for pid in list(self._children):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        for spec in specs:
            for procs in spec["cgroup_procs"]:
                _kill_cgroup(procs)
            if spec.get("uid") is not None:
                helper = os.fork()
                if helper == 0:
                    child.kill_uid(int(spec["uid"]))
                self._reap(block_for=helper)
        self._reap(block_for=None)
        for spec in specs:
            for procs in spec["cgroup_procs"]:
                for _ in range(100):  # busy until the last killed process is reaped
                    try:
                        os.rmdir(os.path.dirname(procs))
                        break
                    except OSError:
                        self._reap(block_for=None)
                        time.sleep(0.005)
            shutil.rmtree(spec["env"]["TMPDIR"], ignore_errors=True)


def _kill_cgroup(procs: str) -> None:
    for _ in range(1000):
        try:
            with open(procs) as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            return
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.001)


def _probe_unprivileged() -> str | None:
    """Whether an unprivileged uid can read the standard library from here."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            os.listdir(os.path.dirname(os.__file__))
            open(os.__file__, "rb").close()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if status == 0:
        return None
    return f"an unprivileged uid cannot read the interpreter's files under {sys.base_prefix}"


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    problem = expose_interpreter()
    if problem is None and os.geteuid() == 0:
        problem = _probe_unprivileged()
    sock.send(json.dumps({"hello": 1, "unprivileged_problem": problem}).encode())
    os.chdir("/")
    Template(sock).run()


if __name__ == "__main__":
    main()
