"""The worker's watch on its busy slots: a delivery that reaches a slot running a sandbox is
handed to whichever slot is free first, within a wake-up, instead of waiting for that run.

Each slot consumes its pool's work queue and its AMQP sync lane, one unacked message each
(quorum queues allow no prefetch shared by a channel's consumers), and waits on the pool's
Redis sync lane while idle (lane.py). So a slot that is running can be handed a second
delivery, typically a sync request. While a slot runs, its broker socket and its lane's are on
an epoll set the keeper (the worker's main thread) waits on; when either sends something, the
keeper services that connection and the worker shares what arrived.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Callable

from warren.errors import Unavailable
from workers.slot import Slot


class BusyWatch:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._slots: dict[int, Slot] = {}

    def running(self, slot: Slot, share: Callable[[Slot], None]) -> None:
        """The slot is about to release its connection to run a sandbox (its own thread, its
        lock held): what it was delivered already is shared now, then its socket is watched."""
        link = slot.link
        if link is not None and link.backbone.undispatched():
            with contextlib.suppress(Unavailable):  # the slot finds out after its run
                link.backbone.process(0)  # read off the socket but not run: no wake-up comes
        lane = slot.lane
        if lane is not None and lane.buffered() and (request := lane.take()) is not None:
            slot.pending.append(request)  # read with a finisher's replies: no wake-up comes
        if slot.pending:
            share(slot)
        fds = [link.backbone.fileno() if link is not None else None,
               slot.lane.fileno() if slot.lane is not None else None]
        for fd in fds:
            if fd is None:
                continue  # no socket to watch: the keeper's periodic pass serves it
            with contextlib.suppress(OSError):  # a socket that just closed: nothing to watch
                self._epoll.register(fd, select.EPOLLIN)
                self._slots[fd] = slot
                slot.watched.append(fd)

    def done(self, slot: Slot) -> None:
        """The slot took its connections back (its own thread, holding its lock)."""
        fds, slot.watched = slot.watched, []
        for fd in fds:
            self._slots.pop(fd, None)
            with contextlib.suppress(OSError):  # closed meanwhile: the kernel dropped it
                self._epoll.unregister(fd)

    def wait(self, timeout_s: float) -> list[Slot]:
        """The running slots whose broker sent something, after at most `timeout_s`."""
        try:
            events = self._epoll.poll(timeout_s)
        except InterruptedError:
            return []
        return [slot for fd, _ in events if (slot := self._slots.get(fd)) is not None]

    def close(self) -> None:
        self._epoll.close()
