"""`ApiChannel`: a ChildChannel for an external runtime, speaking the Runtime API instead of frames.

The sandbox sends it the same request frames and gets the same ready and response frames back
as from the Python runtime, so `Sandbox` treats both alike. Underneath, the invocation is served
to the runtime's `GET .../invocation/next` and its answer read from a POST, on a loopback port
of this sandbox's own (runtimeapi.py). No thread: the invoking thread moves every byte inside
`wait`, so a runtime's requests between invocations wait until the next one (as a frozen Lambda
environment's would). When the sandbox has a uid of its own, a connection from any other uid is
dropped at once (its owner is read from /proc/net/tcp).
"""

from __future__ import annotations

import json
import os
import select
import socket
import time

from sandbox import protocol
from sandbox.channel import EXITED, TIMEOUT, ChildChannel
from sandbox.forkserver import ChildProcess
from sandbox.httpconn import BadRequest, Connection
from sandbox.logbuffer import LogBuffer
from sandbox.netns import Inside, receive_listener
from sandbox.procstatus import PeakReader
from sandbox.runtimeapi import MAX_RESPONSE_BYTES, RuntimeApi

_PAST_CAP = 64 * 1024  # read this much more than the limit, so the size reported is the size
SETTLE_S = 0.25


Listener = socket.socket | Inside  # Inside: made by a child with network none (netns.py)


def listen(network: str = "default") -> Listener:
    """A fresh loopback listener for one sandbox child (with network none, made by the child)."""
    if network == "none":
        return Inside()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    return sock


def open_channel(
    ctrl: socket.socket,
    log_r: int,
    child: ChildProcess,
    listener: Listener | None,
    owner: tuple[str, int | None, int],
) -> ChildChannel | ApiChannel:
    """The channel to a new child: frames to the Python runtime, or the Runtime API."""
    if listener is None:
        return ChildChannel(ctrl, log_r, child.fileno())
    arn, uid, memory_mb = owner
    return ApiChannel(
        ctrl, log_r, child.fileno(), listener if isinstance(listener, socket.socket) else None,
        pid=child.pid, arn=arn, uid=uid, memory_mb=memory_mb
    )


def peer_uid(conn: socket.socket, pid: int | None = None) -> int | None:
    """The uid owning the other end of a loopback TCP connection, from /proc/net/tcp.

    With `pid`, that of the process's network namespace (a child with network none).
    """
    def hexed(address: tuple[str, int]) -> str:
        host = socket.htonl(int.from_bytes(socket.inet_aton(address[0]), "big"))
        return f"{host:08X}:{address[1]:04X}"

    # Both ends must match: a closed socket of the same port (TIME_WAIT, owned by uid 0) may linger.
    peer, ours = hexed(conn.getpeername()), hexed(conn.getsockname())
    try:
        with open(f"/proc/{pid or 'self'}/net/tcp") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 7 and fields[1] == peer and fields[2] == ours:
                    return int(fields[7])
    except OSError:
        pass
    return None


class ApiChannel:
    def __init__(
        self,
        ctrl: socket.socket,
        log_r: int,
        exit_fd: int,
        listener: socket.socket | None,  # None: the child sends it over `ctrl` (netns.py)
        *,
        pid: int,
        arn: str,
        uid: int | None,
        memory_mb: int = 0,
    ) -> None:
        ctrl.setblocking(False)
        os.set_blocking(log_r, False)
        self._ctrl, self._log_r, self._exit_fd = ctrl, log_r, exit_fd
        self._listener, self._uid, self._memory_mb = listener, uid, memory_mb
        self._netns_pid = pid if listener is None else None  # whose /proc/PID/net/tcp to read
        self._heap_oom = False  # V8 said its heap is exhausted (then it aborts)
        self._peak = PeakReader(pid)
        self._api = RuntimeApi(arn, time.monotonic())
        self._conns: dict[int, Connection] = {}
        self._reader = protocol.FrameReader()
        self._epoll = select.epoll()
        for fd in (ctrl.fileno(), log_r, exit_fd):
            self._epoll.register(fd, select.EPOLLIN)
        if listener is not None:
            self._epoll.register(listener.fileno(), select.EPOLLIN)
        self._ctrl_open = self._log_open = True
        self._exit_poll = select.poll()
        self._exit_poll.register(exit_fd, select.POLLIN)
        self._held = LogBuffer(1 << 20)  # output read between invocations, for the next one
        self._holding = False

    def exited(self) -> bool:
        """Whether the runtime has exited; between invocations, first let it say which it does.

        A runtime may post its answer and then exit (Node's does after an uncaught exception, a
        one-shot bootstrap always): until it asks for the next event, or at most `SETTLE_S`, it
        is given the chance, so that the next invocation goes to a fresh one instead of failing.
        A healthy runtime asks at once, and its request has to be waited for anyway.
        """
        api = self._api
        if api.ready_taken and not api.waiting and self._exit_poll.poll(0) == []:
            deadline = time.monotonic() + SETTLE_S
            self._holding = True
            while not api.waiting and time.monotonic() < deadline:
                if self._pump(deadline, self._held):
                    break
        return bool(self._exit_poll.poll(0))

    def send(self, frame: bytes, deadline: float) -> None:
        rid, deadline_ms, payload, context = protocol.unpack_request(
            frame[protocol.LENGTH.size :]
        )
        self._api.submit(rid, deadline_ms, payload, context)

    def wait(self, deadline: float, logs: LogBuffer) -> bytes | str:
        """A ready or response frame (without its length); EXITED; or TIMEOUT at the deadline."""
        if self._holding:
            logs.feed(self._held.text().encode())
            self._held, self._holding = LogBuffer(1 << 20), False
        while True:
            got = self._result()
            if got is not None:
                self.drain_logs(logs)
                return got
            if time.monotonic() >= deadline:
                return TIMEOUT
            if self._pump(deadline, logs):
                self.drain_logs(logs)
                self._read_ctrl()
                got = self._result() or self._out_of_memory()
                return got if got is not None else EXITED

    def _pump(self, deadline: float, logs: LogBuffer) -> bool:
        """Serve whatever is ready before the deadline; True once the runtime has exited."""
        self._watch_out()
        exited = False
        for fd, events in self._epoll.poll(max(deadline - time.monotonic(), 0)):
            if fd == self._log_r:
                self.drain_logs(logs)
            elif fd == self._exit_fd:
                exited = True
            elif self._listener is not None and fd == self._listener.fileno():
                self._accept()
            elif fd == self._ctrl.fileno():
                self._read_ctrl()
            else:
                if events & select.EPOLLOUT and fd in self._conns:
                    self._conns[fd].flush()
                if events & ~select.EPOLLOUT:
                    self._serve(fd)
        return exited

    def _out_of_memory(self) -> bytes | None:
        """Node ran out of heap mid-invocation: out of memory, as a cgroup kill would say.

        Node's heap is capped at the function's memory (`--max-old-space-size`), so V8 may abort
        before the cgroup's OOM killer strikes, and without a cgroup it is the only limit that
        fires cleanly; it prints its banner on the way out.
        """
        rid = self._api.in_flight
        if not self._heap_oom or rid is None:
            return None
        message = f"RequestId: {rid} Error: Runtime exited with error: signal: aborted"
        error = {"errorMessage": message, "errorType": "Runtime.OutOfMemory"}
        body = json.dumps(error).encode()
        elapsed = self._api.elapsed_ms()
        frame = protocol.pack_response(
            False, elapsed, self._memory_mb * 1024, "Runtime.OutOfMemory", body
        )
        return frame[protocol.LENGTH.size :]

    def _result(self) -> bytes | None:
        frame = self._reader.frame()
        if frame is not None:  # the child could not exec the bootstrap: an init error
            self._api.ready_taken = True
            return frame
        api = self._api
        if api.ready is not None and not api.ready_taken:
            api.ready_taken = True
            return protocol.pack_ready(api.ready.init_ms, api.ready.error)[protocol.LENGTH.size :]
        answer = api.answer
        if answer is None:
            return None
        api.answer = None
        frame = protocol.pack_response(
            answer.ok, answer.duration_ms, self._peak.kb(), answer.error_type, answer.body
        )
        return frame[protocol.LENGTH.size :]

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            if self._uid is not None and peer_uid(sock, self._netns_pid) != self._uid:
                sock.close()  # not this sandbox's process: it gets nothing from here
                continue
            conn = Connection(sock, MAX_RESPONSE_BYTES + _PAST_CAP)
            self._conns[conn.fileno()] = conn
            self._epoll.register(conn.fileno(), select.EPOLLIN)

    def _watch_out(self) -> None:
        """Poll for room to write only while a reply (a big event) is still being sent."""
        for conn in [c for c in self._conns.values() if c.closing and not c.out]:
            if not self._api.holds(conn):
                self._drop(conn)
        for fd, conn in self._conns.items():
            want = bool(conn.out)
            if want != conn.watching_out:
                mask = select.EPOLLIN | (select.EPOLLOUT if want else 0)
                self._epoll.modify(fd, mask)
                conn.watching_out = want

    def _serve(self, fd: int) -> None:
        conn = self._conns.get(fd)
        if conn is None:
            return
        try:
            data = conn.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        try:
            for req in conn.feed(data):
                self._api.handle(conn, req)
                if req.close:  # closed once its reply is out (a parked GET's: when delivered)
                    conn.closing = True
                    break
        except BadRequest as exc:
            error = {"errorMessage": str(exc), "errorType": "InvalidRequestFormat"}
            conn.reply(400, json.dumps(error).encode())
            self._drop(conn)
            return

    def _read_ctrl(self) -> None:
        while self._ctrl_open:
            try:
                if self._listener is None:  # its first bytes carry the listener (netns.py)
                    listener, data = receive_listener(self._ctrl)
                    if listener is not None:
                        self._listener = listener
                        self._epoll.register(listener.fileno(), select.EPOLLIN)
                        if not data:
                            continue
                else:
                    data = self._ctrl.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # closed by a successful exec
                self._ctrl_open = False
                self._epoll.unregister(self._ctrl.fileno())
                return
            self._reader.feed(data)

    def _drop(self, conn: Connection) -> None:
        self._api.forget(conn)
        self._conns.pop(conn.fileno(), None)
        try:
            self._epoll.unregister(conn.fileno())
        except (OSError, ValueError):
            pass
        conn.close()

    def drain_logs(self, logs: LogBuffer) -> None:
        while self._log_open:
            try:
                data = os.read(self._log_r, 1 << 16)
            except BlockingIOError:
                return
            if not data:
                self._log_open = False
                self._epoll.unregister(self._log_r)
                return
            if b"heap out of memory" in data:
                self._heap_oom = True
            logs.feed(data)

    def close(self) -> None:
        for conn in list(self._conns.values()):
            conn.close()
        self._conns.clear()
        self._epoll.close()
        self._peak.close()
        if self._listener is not None:
            self._listener.close()
        self._ctrl.close()
        os.close(self._log_r)
