"""A slot: one thread's broker connection (a link), the deliveries it took, and its lock."""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable

from warren.errors import Unavailable
from warren.ports import Broker, Delivery
from warren.store.synclane import Request
from workers.lane import SyncLane

LANE_POLL_S = 0.01  # a broker without a socket to wait on (tests' in-memory one) is polled


def _nothing() -> None:
    return None


class Link:
    """One connection of a slot and the chunks delivered on it that are not settled yet.

    A connection that dies takes its unacked chunks with it (the broker redelivers them), so
    the count belongs to the connection, not to the slot: a reconnecting slot starts a new link.
    """

    def __init__(self, backbone: Broker, queue: str) -> None:
        self.backbone = backbone
        self.queue = queue
        self.unacked = 0
        self.tags: list[str] = []  # its consumers: the pool's work queue and sync lane
        self.ring: Callable[[], None] = _nothing  # its slot's bell (the slot may wait off pika)


class Slot:
    """What a slot thread owns: its link, its Redis sync lane (lane.py), the deliveries and
    requests taken but not started, its lock, and its bell (a pipe another thread writes to
    wake it while it waits on its sockets).

    pika connections are not thread-safe. The slot thread holds `lock` whenever it touches its
    connection and releases it only while a sandbox runs; the worker's keeper (main thread)
    takes it in that window to answer heartbeats, so a handler running for minutes never
    leaves the connection unserviced. Deliveries are only queued in `pending` by the consumer
    callback (which may run on the keeper) and always run on the slot thread.
    """

    def __init__(self, number: int) -> None:
        self.number = number
        self.lock = threading.Lock()
        self.link: Link | None = None
        self.lane: SyncLane | None = None
        self.pending: deque[Delivery | Request] = deque()
        self.cancelled = False
        self.watched: list[int] = []  # its sockets, while on the keeper's watch (keeper.py)
        self.bell, self._bell_w = os.pipe()
        os.set_blocking(self.bell, False)
        os.set_blocking(self._bell_w, False)

    def ring(self) -> None:
        """Wake the slot's wait on its sockets (safe from any thread)."""
        with contextlib.suppress(BlockingIOError, OSError):  # a full pipe wakes it all the same
            os.write(self._bell_w, b"\0")

    def hush(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self.bell, 512):
                pass

    def close(self) -> None:
        for fd in (self.bell, self._bell_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.lane is not None:
            self.lane.close()

    def wait(self, link: Link, timeout_s: float) -> None:
        """Idle: wait up to `timeout_s` for a delivery, a request on the lane (queued in
        `pending`) or the bell. pika runs whenever anything but the lane woke the slot, and at
        the end of a quiet wait (heartbeats, callbacks from other threads)."""
        backbone, lane = link.backbone, self.lane
        lane_fd = lane.fileno() if lane is not None else None
        if lane is None or lane_fd is None:
            backbone.process(timeout_s)  # no lane to wait on: pika waits (the bell wakes it)
            return
        broker_fd = backbone.fileno()
        if lane.buffered():
            ready = [lane_fd]
        elif broker_fd is None or backbone.undispatched():
            backbone.process(0 if broker_fd is not None else LANE_POLL_S)
            ready = [lane_fd] if lane.take_ready() else []
        else:
            ready, _, _ = select.select([self.bell, broker_fd, lane_fd], [], [], timeout_s)
            if self.bell in ready:
                self.hush()
            if ready != [lane_fd]:
                backbone.process(0)
        if lane_fd in ready and (request := lane.take(readable=True)) is not None:
            self.pending.append(request)

    def wait_lane(self, timeout_s: float) -> None:
        """With no broker connection: wait on the lane and the bell only."""
        lane = self.lane
        lane_fd = lane.fileno() if lane is not None else None
        if lane is None or lane_fd is None:
            time.sleep(min(timeout_s, LANE_POLL_S * 5))
            return
        if lane.buffered():
            ready = [lane_fd]
        else:
            ready, _, _ = select.select([self.bell, lane_fd], [], [], timeout_s)
        if self.bell in ready:
            self.hush()
        if lane_fd in ready and (request := lane.take(readable=True)) is not None:
            self.pending.append(request)

    def wake(self) -> None:
        """Make the slot's wait return now (safe from any thread)."""
        self.ring()
        link = self.link
        if link is None:
            return
        try:
            link.backbone.call_soon(_nothing)
        except Unavailable:
            pass

    def keep(self, share: Callable[[Slot], None]) -> None:
        """Answer heartbeats and run queued callbacks while the slot thread runs a sandbox;
        `share` gets the slot when a delivery came meanwhile (the lock still held)."""
        if not self.lock.acquire(blocking=False):
            return  # the slot thread is using its connection itself
        try:
            link = self.link
            if link is not None and link.backbone.is_open:
                link.backbone.process(0)
            if self.lane is not None and (request := self.lane.take()) is not None:
                self.pending.append(request)
            if self.pending:
                share(self)
        except Unavailable:
            pass  # the slot thread finds out and reconnects
        finally:
            self.lock.release()
