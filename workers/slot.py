"""A slot: one thread's broker connection (a link), the deliveries it took, and its lock."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from warren.errors import Unavailable
from warren.ports import Broker, Delivery


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


class Slot:
    """What a slot thread owns: its link, the deliveries its consumer handed over, its lock.

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
        self.pending: deque[Delivery] = deque()
        self.cancelled = False
        self.watched: int | None = None  # its socket, while on the keeper's watch (keeper.py)

    def wake(self) -> None:
        """Make the slot's `process` return now (safe from any thread)."""
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
                if self.pending:
                    share(self)
        except Unavailable:
            pass  # the slot thread finds out and reconnects
        finally:
            self.lock.release()
