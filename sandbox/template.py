"""The template process (fork server): a warm interpreter that forks sandbox children on request.

Started once per calling process with the runtime already imported, so a new sandbox costs a
fork instead of an interpreter start. Every child starts as a spare, forked ahead, already in a
new session, in a group of its own, with its fds, private view and stdio in place, and is offered
to the caller (its control socket, log pipe and status pipe, as SCM_RIGHTS); the caller sends the
spec to the spare itself; once that cold start is over it tells the template (a claim, for the
clean-up should the caller go) and asks for the next spare, so that neither the template's
wake-up nor the fork takes a core from it. So the slow part of a cold start (fork, cgroup
migration) and the template's own round trip are paid between cold starts. It is the children's
subreaper: it reaps every process orphaned below it and reports each sandbox child's wait status
on a pipe of that child's own. Requests arrive as JSON datagrams on a SOCK_SEQPACKET socket.
Standard library only (see protocol.py).
"""

from __future__ import annotations

import ctypes
import gc
import glob
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any

import sandbox.bootstrap  # noqa: F401  (as sandbox.runtime: loaded once, shared by every child)
import sandbox.child as child
import sandbox.runtime  # noqa: F401  (imported here so every child starts with it loaded)
from sandbox.cgroup import Cgroup, CgroupParent
from sandbox.mountview import expose_interpreter
from sandbox.mountwalls import probe as probe_walls
from sandbox.tmpdir import remove_tree

STATUS = struct.Struct(">i")
_PR_SET_CHILD_SUBREAPER = 36


@dataclass
class Spare:
    pid: int
    group: Cgroup | None


class Template:
    def __init__(
        self, sock: socket.socket, walls: bool = False, leftovers: str | None = None
    ) -> None:
        self._sock = sock
        self._walls = walls  # spares build their private view ahead (see child.wait_as_spare)
        # The caller's tmp dirs' prefix: swept when the caller went without closing (it was
        # killed): then none of its sandboxes lives on, and some tmp dirs may not have been
        # claimed yet (a claim follows its cold start) or were made ahead and never used.
        self._leftovers = leftovers
        # Offered to the caller, neither claimed nor abandoned yet; kept after they exit (the
        # caller may have handed one a spec: then its group is the caller's to read and remove).
        self._spares: dict[int, Spare] = {}
        self._doomed: dict[int, Cgroup] = {}  # abandoned spares' groups, removed once reaped
        self._swept: set[CgroupParent] = set()
        self._children: dict[int, int] = {}  # pid -> write end of its status pipe
        # What to clean up if the caller goes without closing its sandboxes: per sandbox (its tmp
        # dir names it) the latest child's spec and group, kept after that child exits (its
        # descendants may live on); forgotten once the caller has removed the tmp dir (closed).
        self._known: dict[str, tuple[int, dict[str, Any], Cgroup | None]] = {}
        self._wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def run(self) -> None:
        poller = select.poll()  # not select(2): the caller's fd numbers may be past 1024
        poller.register(self._sock.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            try:
                ready = {fd for fd, _ in poller.poll()}
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
        try:
            msg, fds, _, _ = socket.recv_fds(self._sock, 1 << 16, 4)
        except ConnectionResetError:  # the caller closed with an offer still unread
            return False
        for fd in fds:
            os.close(fd)  # no request carries any
        if not msg:
            return False
        request: dict[str, Any] = json.loads(msg)
        if request["op"] == "spare":
            self._offer(request)
        elif request["op"] == "claim":
            self._claim(request)
        elif request["op"] == "abandon":
            self._abandon(int(request["pid"]))
        elif request["op"] == "close":
            self._leftovers = None  # an orderly close: the caller lives on, and so may its dirs
        elif request["op"] == "kill_uid":
            self._kill_uid(int(request["uid"]))
        else:
            self._reply({"error": f"unknown op {request['op']!r}"})
        return True

    def _reply(self, msg: dict[str, Any], fds: list[int] | None = None) -> None:
        try:
            socket.send_fds(self._sock, [json.dumps(msg).encode()], fds or [])
        except OSError:
            pass  # the caller is gone: the next read says so, and the shutdown follows

    def _offer(self, request: dict[str, Any]) -> None:
        """Fork a spare and hand the caller its ends (control socket, log pipe, status pipe).

        The caller then sends the spec straight to the spare: the template is off a cold
        start's critical path. The spare's group gets the limits asked for (the caller changes
        them if the function that claims it has others)."""
        parent = CgroupParent(**request["parent"]) if request.get("parent") else None
        limits = request.get("limits")
        try:
            if parent is not None and parent not in self._swept:
                self._swept.add(parent)
                parent.sweep_stale()  # what a template killed before it could clean up left
            group = parent.create(*limits) if parent is not None and limits else None
        except OSError as exc:
            self._reply({"offer": None, "error": f"cgroup: {exc}"})
            return
        ctrl, ctrl_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        log_r, log_w = os.pipe2(os.O_CLOEXEC)
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        me = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (log_r, log_w, status_r, status_w):
                os.close(fd)
            ctrl.close()
            ctrl_child.close()
            if group is not None:
                group.remove()
            error = f"cannot start a sandbox child: {exc}"
            self._reply({"offer": None, "error": error})
            return
        if pid == 0:
            procs = group.procs_files if group is not None else []
            shm_mb = limits[0] // (1 << 20) if limits else None  # the function's memory, likely
            child.wait_as_spare(ctrl_child.fileno(), log_w, procs, me, self._walls, shm_mb)
        ctrl_child.close()
        os.close(log_w)
        self._children[pid] = status_w
        self._spares[pid] = Spare(pid, group)
        offer = {"pid": pid, "cgroup": group.as_dict() if group else None, "limits": limits,
                 "parent": request.get("parent")}
        fds = [ctrl.fileno(), log_r, status_r]
        try:
            if group is not None:  # opened here, not by the caller during a cold start
                fds.append(group.open_peak())
        except OSError:
            pass
        try:
            self._reply({"offer": offer}, fds)
        finally:
            ctrl.close()
            for fd in fds[1:]:
                os.close(fd)

    def _claim(self, request: dict[str, Any]) -> None:
        """The caller handed a spare a spec: remember what to clean up should the caller go."""
        spare = self._spares.pop(int(request["pid"]), None)
        if spare is None:
            return
        for tmp in [t for t in self._known if not os.path.isdir(t)]:
            del self._known[tmp]
        spec = {"uid": request.get("uid"), "tmp_dir": request["tmp_dir"]}
        self._known[request["tmp_dir"]] = (spare.pid, spec, spare.group)

    def _abandon(self, pid: int) -> None:
        """The caller will not use this spare (its end of stream makes it exit)."""
        spare = self._spares.pop(pid, None)
        if spare is None or spare.group is None:
            return
        if pid in self._children:
            self._doomed[pid] = spare.group
        else:
            spare.group.remove()

    def _kill_uid(self, uid: int) -> None:
        helper = os.fork()
        if helper == 0:
            child.kill_uid(uid)
        # Keep reaping while the helper works: kill(-1) counts zombies until they are collected.
        status = self._reap(block_for=helper)
        self._reply({"status": status})

    def _reap(self, block_for: int | None) -> int:
        while True:
            try:
                pid, status = os.waitpid(-1, 0 if block_for is not None else os.WNOHANG)
            except ChildProcessError:
                return -1
            if pid == 0:
                return -1
            doomed = self._doomed.pop(pid, None)
            if doomed is not None:
                doomed.remove()
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
        leftovers = list(self._known.values())
        for pid in [*self._children, *self._spares]:
            _kill(pid)
        for spare in self._spares.values():
            # The caller may have handed it a spec and gone before its claim said so.
            if spare.group is not None:
                spare.group.kill_all()
        for pid, spec, group in leftovers:
            if group is not None and group.kill_all():
                continue
            if spec.get("uid") is not None and pid in self._children:
                # Only while its child lives is the uid surely still this caller's: a dead
                # caller's leases are free again at once.
                helper = os.fork()
                if helper == 0:
                    child.kill_uid(int(spec["uid"]))
                self._reap(block_for=helper)
        deadline = time.monotonic() + 5
        while self._children and time.monotonic() < deadline:
            self._reap(block_for=None)
            time.sleep(0.002)
        self._remove(leftovers + [(s.pid, {}, s.group) for s in self._spares.values()])

    def _remove(self, leftovers: list[tuple[int, dict[str, Any], Cgroup | None]]) -> None:
        for _, spec, group in leftovers:
            if group is not None:
                group.remove()
            if spec:
                remove_tree(_tmp_dir(spec))
        if self._leftovers:
            for path in glob.glob(glob.escape(self._leftovers) + "*"):
                remove_tree(path)


def _tmp_dir(spec: dict[str, Any]) -> str:
    """The sandbox's tmp dir on the host (the handler may see it as /tmp)."""
    return str(spec["tmp_dir"])


def _kill(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _probe_unprivileged() -> str | None:
    """Whether a child can become an unprivileged uid and read the standard library from here."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        step = "setgroups"
        try:
            os.setgroups([])
            step = "setresgid"
            os.setresgid(65534, 65534, 65534)
            step = "setresuid"
            os.setresuid(65534, 65534, 65534)
            step = "read"
            os.listdir(os.path.dirname(os.__file__))
            open(os.__file__, "rb").close()
            os._exit(0)
        except BaseException as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else repr(exc)
            os.write(write_end, f"{step}\n{reason}".encode())
            os._exit(1)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        step, _, reason = f.read().decode(errors="replace").partition("\n")
    _, status = os.waitpid(pid, 0)
    if status == 0:
        return None
    if step == "read":
        return (
            f"an unprivileged uid cannot read the interpreter's files under {sys.base_prefix} "
            f"({reason})"
        )
    caps = {"setgroups": "CAP_SETGID", "setresgid": "CAP_SETGID", "setresuid": "CAP_SETUID"}
    return (
        f"the template cannot switch to an unprivileged uid: {step} failed ({reason}); "
        f"it needs {caps.get(step, 'CAP_SETUID and CAP_SETGID')}"
    )


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    problem = expose_interpreter()
    if problem is None and os.geteuid() == 0:
        problem = _probe_unprivileged()
    walls = probe_walls()
    hello = {"hello": 1, "unprivileged_problem": problem, "walls_problem": walls}
    sock.send(json.dumps(hello).encode())
    os.chdir("/")
    # Everything imported so far is shared with every child: keep the collector off those pages
    # so that children do not copy them on their first collection.
    gc.freeze()
    leftovers = sys.argv[2] if len(sys.argv) > 2 else None
    Template(sock, walls=walls is None and problem is None, leftovers=leftovers).run()


if __name__ == "__main__":
    main()
