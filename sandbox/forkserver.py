"""Starting sandbox children: through the shared fork server, or a fresh interpreter each time.

`ForkServer` is the caller's handle on the template process (template.py). One is shared per
calling process (`ForkServer.shared()`), started lazily and restarted when it has died; its
requests are serialised by a lock, so any number of threads may spawn at once. `ExecLauncher`
(execlauncher.py) starts a fresh `python` per child instead: slower, kept to measure the
difference.
"""

from __future__ import annotations

import array
import atexit
import contextlib
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
from typing import Any, ClassVar, NamedTuple, Protocol

import orjson

from sandbox import protocol
from sandbox.cgroup import Cgroup
from sandbox.tmpdir import tmp_dir_prefix
from warren.errors import SandboxError

STATUS = struct.Struct(">i")
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOT = "import sys; sys.path.insert(0, {path!r}); from sandbox.{module} import {func}; {func}()"


def ready(fd: int, events: int, timeout: float) -> bool:
    """poll(2) for one fd: unlike select(2), fine for fd numbers past 1024 (a busy worker's)."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(max(timeout, 0) * 1000))


class ChildProcess(Protocol):
    """A started sandbox child, as the caller sees it, with the cgroup made for it if any.

    `ctrl` and `log_r` are the caller's ends of its control socket and log pipe (the channel
    takes them over)."""

    pid: int
    cgroup: Cgroup | None
    ctrl: socket.socket
    log_r: int

    def fileno(self) -> int:
        """An fd that becomes readable once the child has exited."""

    def wait_status(self, timeout: float) -> int | None:
        """The child's wait status once it has exited; None if unknown within `timeout`."""

    def close(self) -> None: ...


class Launcher(Protocol):
    def spawn(self, spec: dict[str, Any], tmp_fd: int = -1) -> ChildProcess:
        """Start a child per `spec`; `spec["cgroup"]`, when set, asks for a group of its own.

        `tmp_fd`, when given, is the detached mount of the sandbox's /tmp volume."""

    def kill_uid(self, uid: int) -> None:
        """SIGKILL every process owned by `uid` (the sandbox's own), waiting until none is left."""

    def wake(self) -> None:
        """A cold start begins: get ready for it (the spec follows shortly)."""

    def ahead(self) -> None:
        """A cold start is over: prepare what the next one needs (now, not during one)."""

    def unprivileged_problem(self) -> str | None:
        """Why children could not run as an unprivileged uid here, or None if they can."""

    def walls_problem(self) -> str | None:
        """Why children could not get a private view of files and processes, or None."""


class ForkedChild:
    """A child of the fork server; its wait status arrives on a pipe of its own."""

    def __init__(
        self, pid: int, status_fd: int, cgroup: Cgroup | None, ctrl: socket.socket, log_r: int
    ) -> None:
        self.pid = pid
        self.cgroup = cgroup
        self.ctrl, self.log_r = ctrl, log_r
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

    def abandon(self) -> None:
        """An offered spare not used: its end of stream makes it exit (the template reaps it)."""
        self.ctrl.close()
        os.close(self.log_r)
        self.close()
        if self.cgroup is not None:
            self.cgroup.close()


class _Offer(NamedTuple):  # a spare the template forked ahead, until a cold start takes it
    child: ForkedChild
    parent: Any
    limits: Any


class ForkServer:
    """The caller's side of the template process.

    A cold start takes the spare on offer and sends it the spec directly, telling the template
    (a claim, no reply awaited); once it is over, `ahead` asks for the next spare, whose offer
    is picked up by the next cold start. Replies and offers share the socket: offers are told
    apart by their key and kept."""

    _shared: ClassVar[ForkServer | None] = None
    _shared_pid: ClassVar[int] = 0
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, python: str = sys.executable, spares: int = 2) -> None:
        # Two spares: the one a cold start takes was forked a cold start earlier, so it has
        # had the time to finish its set-up even when cold starts come back to back.
        self._python, self._spares = python, spares
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._problem: str | None = None
        self._walls_problem: str | None = "not probed"
        self._offers: list[_Offer] = []
        self._pending = 0  # spares asked for whose offer has not been read yet
        self._next: tuple[Any, Any] | None = None  # (parent, limits) of the last cold start
        self._claims: list[dict[str, Any]] = []  # told to the template once the cold start ends

    @classmethod
    def shared(cls) -> ForkServer:
        """The fork server of this process (a new one after the caller itself forked)."""
        with cls._shared_lock:
            if cls._shared is None or cls._shared_pid != os.getpid():
                cls._shared, cls._shared_pid = cls(), os.getpid()
                # Stopped when this process exits, not left for the finaliser to find running.
                atexit.register(_close_at_exit, cls._shared, cls._shared_pid)
            return cls._shared

    def spawn(self, spec: dict[str, Any], tmp_fd: int = -1) -> ForkedChild:
        want = spec.get("cgroup")
        parent = want["parent"] if want else None
        limits = [want["memory_bytes"], want["max_pids"]] if want else None
        frame = protocol.pack_spec(orjson.dumps(spec))  # read by the child's json module
        for _attempt in range(3):
            with self._lock:
                offer = self._take_offer(parent, limits)
                self._claims.append({"op": "claim", "pid": offer.child.pid,
                                     "tmp_dir": spec["tmp_dir"], "uid": spec.get("uid")})
                self._next = (parent, limits)
            child = offer.child
            try:
                if child.cgroup is not None and limits and offer.limits != limits:
                    child.cgroup.set_limits(*limits)
                socket.send_fds(child.ctrl, [frame], [tmp_fd] if tmp_fd >= 0 else [])
                return child
            except OSError:
                _give_up(child)  # it died, or its group would not take the limits
        raise SandboxError("no sandbox child of the fork server would start")

    def wake(self) -> None:
        """A cold start begins: the spare it will take stays awake for its spec."""
        with self._lock, contextlib.suppress(OSError):  # a dead spare is passed over when taken
            if self._offers:
                self._offers[0].child.ctrl.send(protocol.WAKE)

    def ahead(self) -> None:
        """A cold start is over: have the next spare forked now (likely for the same limits),
        not during it, where the fork and the spare's set-up would take a core from it."""
        with self._lock:
            if self._sock is None:
                return
            claims, self._claims = self._claims, []
            for claim in claims:
                self._post(claim)
            if self._next is None:
                return
            parent, limits = self._next
            try:
                self._receive(block=False)  # offers already here: not read during a cold start
            except OSError:
                return  # the template is gone: the next spawn starts a new one
            for _ in range(self._spares - len(self._offers) - self._pending):
                self._post({"op": "spare", "parent": parent, "limits": limits})

    def kill_uid(self, uid: int) -> None:
        self._request({"op": "kill_uid", "uid": uid})

    def unprivileged_problem(self) -> str | None:
        with self._lock:
            if self._sock is None:  # what a template found does not change when it restarts
                self._ensure_started()
            return self._problem

    def walls_problem(self) -> str | None:
        with self._lock:
            if self._sock is None:
                self._ensure_started()
            return self._walls_problem

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def close(self) -> None:
        """Stop the template process; it kills whatever children it still has."""
        with self._lock:
            self._stop()

    # -- with the lock held -----------------------------------------------------------------

    def _take_offer(self, parent: Any, limits: Any) -> _Offer:
        """A spare below `parent`: one on offer, the one under way, or a new one."""
        for _attempt in (1, 2):
            try:
                while True:
                    # Offers in hand were read by `ahead`; the socket is read only when there
                    # are none (a dead spare is found out by the spec's send, and passed over).
                    while self._offers:
                        offer = self._offers.pop(0)
                        if offer.parent == parent:
                            return offer
                        offer.child.abandon()
                        self._post({"op": "abandon", "pid": offer.child.pid})
                    self._ensure_started()
                    self._receive(block=False)
                    if self._offers:
                        continue
                    if self._pending == 0:
                        self._post({"op": "spare", "parent": parent, "limits": limits})
                    error = self._receive(block=True)
                    if error is not None:
                        raise SandboxError(f"fork server refused the request: {error}")
            except OSError:
                self._stop()  # it died under us: start a new one and try once more
        raise SandboxError("the sandbox fork server exited while handling a request")

    def _post(self, msg: dict[str, Any]) -> None:
        assert self._sock is not None
        try:
            self._sock.send(json.dumps(msg).encode())
        except OSError:
            return  # a dead template is noticed (and restarted) by the next request
        if msg["op"] == "spare":
            self._pending += 1

    def _receive(self, block: bool) -> str | None:
        """Read what the template sent: offers are kept. An offer's error is returned; a reply
        to a request raises _Reply. OSError when the template is gone."""
        assert self._sock is not None
        while True:
            try:
                data, fds = _recv_fds(self._sock, 0 if block else socket.MSG_DONTWAIT)
            except BlockingIOError:
                return None
            if not data:
                raise ConnectionResetError("the sandbox fork server went away")
            msg: dict[str, Any] = json.loads(data)
            if "offer" not in msg:
                raise _Reply(msg)
            self._pending -= 1
            offer = msg["offer"]
            if offer is None:
                return str(msg.get("error"))
            peak = fds[3] if len(fds) > 3 else -1
            group = Cgroup(**offer["cgroup"], peak_fd=peak) if offer["cgroup"] else None
            child = ForkedChild(offer["pid"], fds[2], group, socket.socket(fileno=fds[0]), fds[1])
            self._offers.append(_Offer(child, offer["parent"], offer["limits"]))
            if block:
                return None

    def _request(self, msg: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            for _attempt in (1, 2):
                self._ensure_started()
                assert self._sock is not None
                try:
                    self._sock.send(json.dumps(msg).encode())
                    while True:
                        self._receive(block=True)
                except _Reply as reply:
                    if "error" in reply.msg:
                        error = reply.msg["error"]
                        raise SandboxError(f"fork server refused the request: {error}") from None
                    return reply.msg
                except OSError:
                    pass
                self._stop()  # it died under us: start a new one and try once more
            raise SandboxError("the sandbox fork server exited while handling a request")

    def _ensure_started(self) -> socket.socket:
        if self._sock is not None and self._proc is not None and self._proc.poll() is None:
            return self._sock
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        boot = BOOT.format(path=PACKAGE_PARENT, module="template", func="main")
        try:
            self._proc = subprocess.Popen(
                [self._python, "-I", "-c", boot, str(theirs.fileno()), tmp_dir_prefix()],
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
        for offer in self._offers:
            offer.child.abandon()
        claims, self._offers, self._pending, self._claims = self._claims, [], 0, []
        if self._sock is not None:
            try:
                for claim in claims:  # sandboxes not closed: their template removes their dirs
                    self._sock.send(json.dumps(claim).encode())
                self._sock.send(b'{"op": "close"}')  # orderly: not a caller that was killed
            except OSError:
                pass
            self._sock.close()  # EOF tells the template to kill its children and exit
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


def _recv_fds(sock: socket.socket, flags: int) -> tuple[bytes, list[int]]:
    """socket.recv_fds, with `flags` honoured (3.11's ignores them) and the fds close-on-exec."""
    fds = array.array("i")
    space = socket.CMSG_LEN(4 * fds.itemsize)
    data, ancdata, _, _ = sock.recvmsg(1 << 16, space, flags | socket.MSG_CMSG_CLOEXEC)
    for level, kind, item in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(item[: len(item) - len(item) % fds.itemsize])
    return data, list(fds)


class _Reply(Exception):  # noqa: N818  (a control-flow signal, not an error)
    def __init__(self, msg: dict[str, Any]) -> None:
        super().__init__()
        self.msg = msg


def _give_up(child: ForkedChild) -> None:
    """A claimed spare that could not take its spec: end it and remove its group."""
    child.abandon()
    if child.cgroup is not None:
        child.cgroup.kill_all()
        child.cgroup.remove()


def _close_at_exit(server: ForkServer, owner_pid: int) -> None:
    if os.getpid() == owner_pid:  # not in a forked copy of the owner
        server.close()
