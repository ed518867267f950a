"""`ChildChannel`: the caller's end of one sandbox child, its three fds on one epoll set.

The control socket carries frames (protocol.py), the log pipe carries the child's stdout and
stderr, and the exit fd becomes readable when the child has exited. `wait` serves all three
until a whole frame arrives, the child exits or the deadline passes, so a handler that writes a
lot never blocks on a full pipe and a dead child is noticed at once.
"""

from __future__ import annotations

import os
import select
import socket
import time

from sandbox import protocol
from sandbox.forkserver import ready
from sandbox.logbuffer import LogBuffer

EXITED, TIMEOUT = "exited", "timeout"


class ChildChannel:
    def __init__(self, ctrl: socket.socket, log_r: int, exit_fd: int) -> None:
        ctrl.setblocking(False)
        os.set_blocking(log_r, False)
        self._ctrl, self._log_r, self._exit_fd = ctrl, log_r, exit_fd
        self._reader = protocol.FrameReader()
        self._epoll = select.epoll()
        for fd in (ctrl.fileno(), log_r, exit_fd):
            self._epoll.register(fd, select.EPOLLIN)
        self._log_open = True
        self._exit_poll = select.poll()
        self._exit_poll.register(exit_fd, select.POLLIN)

    def exited(self) -> bool:
        """Whether the child has exited (checked before each invocation, so kept cheap)."""
        return bool(self._exit_poll.poll(0))

    def send(self, frame: bytes, deadline: float) -> None:
        """Send a whole frame; a big one goes as the child reads it, never past the deadline."""
        view = memoryview(frame)
        while view:
            try:
                sent = self._ctrl.send(view)
            except BlockingIOError:
                if not ready(self._ctrl.fileno(), select.POLLOUT, deadline - time.monotonic()):
                    return
                continue
            view = view[sent:]

    def wait(self, deadline: float, logs: LogBuffer) -> bytes | str:
        """The next frame; or EXITED once the child is gone; or TIMEOUT at the deadline."""
        ctrl_fd = self._ctrl.fileno()
        polled = False
        while True:
            frame = self._reader.frame()
            if frame is not None:
                # The child writes its output before the frame, so a poll that saw the frame
                # saw the log pipe readable too, and drained it; a frame that was already here
                # (a cold start's response read with its ready frame) may have some waiting.
                if not polled:
                    self.drain_logs(logs)
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return TIMEOUT
            exited, polled = False, True
            for fd, _ in self._epoll.poll(remaining):
                if fd == ctrl_fd:
                    try:
                        data = self._ctrl.recv(max(protocol.READ_SIZE, self._reader.missing()))
                    except ConnectionResetError:  # it exited with our request unread
                        data = b""
                    if data:
                        self._reader.feed(data)
                    else:
                        exited = True
                elif fd == self._log_r:
                    self.drain_logs(logs)
                elif fd == self._exit_fd:
                    exited = True
            if exited:
                self.drain_logs(logs)
                frame = self._reader.frame()
                return frame if frame is not None else EXITED

    def drain_logs(self, logs: LogBuffer) -> None:
        """Move whatever the child has written so far into `logs`, without blocking."""
        while self._log_open:
            try:
                data = os.read(self._log_r, 1 << 16)
            except BlockingIOError:
                return
            if not data:
                # Every writer is gone: stop watching; the fd is closed with the channel.
                self._log_open = False
                self._epoll.unregister(self._log_r)
                return
            logs.feed(data)

    def close(self) -> None:
        self._epoll.close()
        self._ctrl.close()
        os.close(self._log_r)
