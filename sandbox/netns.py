"""`--network none` for external runtimes: their Runtime API listener is made inside the namespace.

A child with network none lives in a network namespace of its own, where the worker's loopback
is out of reach. So the child (still root) brings the namespace's own loopback up, makes the
listening socket there (a socket's namespace is fixed when it is made) and hands it to the
parent over the control socket (SCM_RIGHTS); the parent accepts on it as on its own listener.
The loopback of an empty namespace reaches nothing but that namespace. Standard library only.
"""

from __future__ import annotations

import fcntl
import socket
import struct

HOST, PORT = "127.0.0.1", 9001  # the address Lambda gives its runtimes, free in an empty namespace
MARKER = b"L"  # the one byte the listener's fd travels with, first on the control socket
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


class Inside:
    """The parent's stand-in for a listener the child will make in its namespace and send."""

    address = f"{HOST}:{PORT}"

    def close(self) -> None:
        """Nothing to close yet: the real listener arrives over the control socket."""


def loopback_up() -> None:
    """Bring the current namespace's `lo` up (ioctl SIOCSIFFLAGS; needs CAP_NET_ADMIN in it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))


def send_listener(ctrl_fd: int) -> None:
    """In the child, right after unshare(CLONE_NEWNET): make the listener here, send it up."""
    loopback_up()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((HOST, PORT))
        listener.listen(16)
        ctrl = socket.socket(fileno=ctrl_fd)
        try:
            socket.send_fds(ctrl, [MARKER], [listener.fileno()])
        finally:
            ctrl.detach()  # the fd stays the child's control socket


def receive_listener(ctrl: socket.socket) -> tuple[socket.socket | None, bytes]:
    """In the parent: (the listener, if it came in this read; bytes past the marker) or raises."""
    data, fds, _, _ = socket.recv_fds(ctrl, 1 << 16, 1)
    if not fds:
        return None, data
    listener = socket.socket(fileno=fds[0])
    listener.setblocking(False)
    return listener, data[len(MARKER) :]
