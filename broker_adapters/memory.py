"""An in-process broker with RabbitMQ's semantics, so the fleet's loops run in a unit test.

`MemoryServer` stands where a RabbitMQ node would (its queues), and `server.connect(keys)`
opens a `MemoryBroker`, one connection implementing warren.ports.Broker as Backbone does:
confirmed publishes refused for a missing queue, per-connection delivery tags, prefetch,
ack/nack(multiple, requeue), redelivery of what a closed connection held unacked, per-queue
TTL dead-lettering (delay queues), per-message expiration, direct reply-to, and `call_soon`
from other threads. Callbacks run only inside `process`, on the caller's thread, as pika's do.
`server.drop_connections()` is a broker outage: every connection closes and its unacked
messages go back to their queues.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from warren.errors import BrokerUnavailable
from warren.keys import DEFAULT_POOL, Keys
from warren.ports import Delivery

if TYPE_CHECKING:
    from warren.ports import Broker

REPLY_TO = "amq.rabbitmq.reply-to"  # what `request` publishes with, as RabbitMQ's clients do


@dataclass(frozen=True)
class _Message:
    body: bytes
    headers: dict[str, Any]
    reply_to: str | None
    correlation_id: str | None
    expires: float | None  # time.monotonic() after which it is dead
    redelivered: bool = False


class _Queue:
    def __init__(self, name: str, ttl_ms: int | None, dead_letter_to: str | None) -> None:
        self.name = name
        self.ttl_ms = ttl_ms
        self.dead_letter_to = dead_letter_to
        self.ready: deque[_Message] = deque()


@dataclass
class _Consumer:
    tag: str
    queue: str
    callback: Callable[[Delivery], None]
    prefetch: int
    unacked: int = 0


class MemoryServer:
    """The queues every MemoryBroker of one test shares; thread-safe."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._connections: dict[str, MemoryBroker] = {}
        self._ids = itertools.count(1)
        self.changed = threading.Condition(threading.RLock())  # any queue or inbox changed

    def connect(self, keys: Keys, name: str = "warren") -> MemoryBroker:
        with self.changed:
            broker = MemoryBroker(self, keys, f"{name}-{next(self._ids)}")
            self._connections[broker.id] = broker
            return broker

    def drop_connections(self) -> None:
        """A broker outage: every connection is closed under its owner."""
        with self.changed:
            for broker in list(self._connections.values()):
                broker.close()

    def ready(self, queue: str) -> list[bytes]:
        """The bodies waiting in `queue` (for assertions)."""
        with self.changed:
            self._expire(time.monotonic())
            found = self._queues.get(queue)
            return [m.body for m in found.ready] if found else []

    # -- under the lock, for MemoryBroker ---------------------------------------------------
    def _declare(self, name: str, ttl_ms: int | None = None, dead_letter_to: str | None = None
                 ) -> None:
        queue = self._queues.get(name)
        if queue is None:
            self._queues[name] = _Queue(name, ttl_ms, dead_letter_to)
        elif (queue.ttl_ms, queue.dead_letter_to) != (ttl_ms, dead_letter_to):
            # RabbitMQ closes the channel: PRECONDITION_FAILED, inequivalent arguments.
            raise BrokerUnavailable(f"queue {name!r} exists with other arguments")

    def _route(self, queue: str, message: _Message, mandatory: bool) -> None:
        if queue.startswith(REPLY_TO + "."):
            target = self._connections.get(queue[len(REPLY_TO) + 1:])
            if target is not None and target.is_open and target._on_reply is not None:
                target._replies.append(message)
                self.changed.notify_all()
            elif mandatory:
                raise BrokerUnavailable(f"the broker returned a message to {queue!r}: NO_ROUTE")
            return
        found = self._queues.get(queue)
        if found is None:
            if mandatory:
                raise BrokerUnavailable(f"the broker returned a message to {queue!r}: NO_ROUTE")
            return  # not mandatory: RabbitMQ drops it
        if found.ttl_ms is not None:
            ttl = time.monotonic() + found.ttl_ms / 1000
            message = replace(message, expires=min(ttl, message.expires or ttl))
        found.ready.append(message)
        self.changed.notify_all()

    def _expire(self, now: float) -> float | None:
        """Dead-letter or drop expired heads (RabbitMQ expires at the head); the next expiry."""
        upcoming: float | None = None
        for queue in list(self._queues.values()):
            while queue.ready and (queue.ready[0].expires or now + 1) <= now:
                self._dead(queue, queue.ready.popleft())
            if queue.ready and queue.ready[0].expires is not None:
                head = queue.ready[0].expires
                upcoming = head if upcoming is None else min(upcoming, head)
        return upcoming

    def _dead(self, queue: _Queue, message: _Message) -> None:
        """An expired message: to the queue's dead-letter target, if it has one, else gone."""
        if queue.dead_letter_to is not None:
            self._route(queue.dead_letter_to, replace(message, expires=None), False)

    def _forget(self, broker: MemoryBroker) -> None:
        self._connections.pop(broker.id, None)


class MemoryBroker:
    """One connection to a MemoryServer (see the module docstring); a warren.ports.Broker."""

    def __init__(self, server: MemoryServer, keys: Keys, connection_id: str) -> None:
        self._server = server
        self._keys = keys
        self.id = connection_id
        self._open = True
        self._tags = itertools.count(1)
        self._consumers: dict[str, _Consumer] = {}
        self.returned: set[str] = set()  # correlation ids of requests with no queue
        self._unacked: dict[int, tuple[str, _Message, _Consumer]] = {}
        self._soon: deque[Callable[[], None]] = deque()
        self._replies: deque[_Message] = deque()
        self._on_reply: Callable[[Delivery], None] | None = None
        self._pools: set[str] = set()

    @property
    def keys(self) -> Keys:
        return self._keys

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def why_closed(self) -> str:
        return "open" if self._open else "the connection was closed"

    def alive(self) -> bool:
        return self._open

    def fileno(self) -> int | None:
        return None  # no socket: a watcher falls back to its tick

    def undispatched(self) -> bool:
        return False

    def _check(self) -> None:
        if not self._open:
            raise BrokerUnavailable(f"connection {self.id} to the memory broker is closed")

    # -- topology -------------------------------------------------------------------------
    def declare(self, pool: str = DEFAULT_POOL) -> None:
        if pool in self._pools:
            return
        for queue in [*self._keys.all_queues(pool), self._keys.sync_queue(pool)]:
            self.declare_queue(queue)
        self._pools.add(pool)

    def declare_queue(self, queue: str) -> None:
        with self._server.changed:
            self._check()
            self._server._declare(queue)

    def declare_delay(self, delay_ms: int) -> str:
        name = self._keys.delay_queue(delay_ms)
        with self._server.changed:
            self._check()
            self._server._declare(name, int(delay_ms), self._keys.async_queue)
        return name

    def depth(self, queue: str) -> int | None:
        with self._server.changed:
            self._check()
            self._server._expire(time.monotonic())
            found = self._server._queues.get(queue)
            return None if found is None else len(found.ready)

    def delete_queue(self, queue: str) -> None:
        with self._server.changed:
            self._check()
            self._server._queues.pop(queue, None)
            for broker in list(self._server._connections.values()):
                broker._consumers = {
                    t: c for t, c in broker._consumers.items() if c.queue != queue
                }
        self._pools.clear()

    def get(self, queue: str) -> Delivery | None:
        with self._server.changed:
            self._check()
            self._server._expire(time.monotonic())
            found = self._server._queues.get(queue)
            if found is None:
                raise BrokerUnavailable(f"no queue {queue!r} (NOT_FOUND)")
            if not found.ready:
                return None
            return self._delivery(next(self._tags), found.ready.popleft())

    # -- publishing -----------------------------------------------------------------------
    def publish(
        self,
        queue: str,
        body: bytes,
        *,
        headers: dict[str, Any] | None = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        expiration_ms: int | None = None,
        confirm: bool = True,
    ) -> None:
        expires = None if expiration_ms is None else time.monotonic() + expiration_ms / 1000
        if reply_to == REPLY_TO:
            if self._on_reply is None:
                # RabbitMQ closes the channel: PRECONDITION_FAILED, fast reply consumer missing.
                raise BrokerUnavailable("request without consume_replies on this connection")
            reply_to = f"{REPLY_TO}.{self.id}"
        message = _Message(bytes(body), dict(headers or {}), reply_to, correlation_id, expires)
        with self._server.changed:
            self._check()
            self._server._route(queue, message, mandatory=confirm)

    def publish_many(
        self, queue: str, bodies: Sequence[bytes], headers: dict[str, Any] | None = None
    ) -> None:
        with self._server.changed:  # all or none: the queue cannot vanish in between
            self._check()
            if bodies and queue not in self._server._queues:
                raise BrokerUnavailable(f"the broker returned a message to {queue!r}: NO_ROUTE")
            for body in bodies:
                self.publish(queue, body, headers=headers)

    # -- consuming ------------------------------------------------------------------------
    def consume(self, queue: str, callback: Callable[[Delivery], None], prefetch: int) -> str:
        with self._server.changed:
            self._check()
            if queue not in self._server._queues:
                raise BrokerUnavailable(f"no queue {queue!r} to consume (NOT_FOUND)")
            tag = f"ctag-{self.id}-{len(self._consumers) + 1}"
            self._consumers[tag] = _Consumer(tag, queue, callback, max(1, prefetch))
            return tag

    def consume_replies(self, callback: Callable[[Delivery], None]) -> None:
        self._check()
        self._on_reply = callback

    def request(self, queue: str, body: bytes, correlation_id: str, expiration_ms: int,
                reply_to: str | None = None) -> None:
        with self._server.changed:
            if queue not in self._server._queues:  # mandatory: RabbitMQ returns it
                self.returned.add(correlation_id)
                return
        self.publish(queue, body, reply_to=reply_to or REPLY_TO, correlation_id=correlation_id,
                     expiration_ms=expiration_ms, confirm=False)

    def cancel(self, consumer_tag: str) -> None:
        with self._server.changed:
            self._check()
            self._consumers.pop(consumer_tag, None)

    def ack(self, tag: int, multiple: bool = False) -> None:
        with self._server.changed:
            for _queue, _message, consumer in self._settle(tag, multiple):
                consumer.unacked -= 1
            self._server.changed.notify_all()  # a consumer may take more now

    def nack(self, tag: int, requeue: bool = True) -> None:
        with self._server.changed:
            for queue, message, consumer in reversed(self._settle(tag, False)):
                consumer.unacked -= 1
                found = self._server._queues.get(queue)
                if requeue and found is not None:
                    found.ready.appendleft(replace(message, redelivered=True))
            self._server.changed.notify_all()

    def _settle(self, tag: int, multiple: bool) -> list[tuple[str, _Message, _Consumer]]:
        self._check()
        if tag not in self._unacked:
            # RabbitMQ closes the channel (PRECONDITION_FAILED, unknown delivery tag).
            self.close()
            raise BrokerUnavailable(f"unknown delivery tag {tag}: the channel is closed")
        tags = sorted(t for t in self._unacked if t <= tag) if multiple else [tag]
        return [self._unacked.pop(t) for t in tags]

    def process(self, time_limit: float) -> None:
        deadline = time.monotonic() + max(0.0, time_limit)
        while True:
            with self._server.changed:
                self._check()
                upcoming = self._server._expire(time.monotonic())
                work = self._collect()
                if not work:
                    wait = deadline - time.monotonic()
                    if upcoming is not None:
                        wait = min(wait, upcoming - time.monotonic())
                    if deadline - time.monotonic() <= 0:
                        return
                    self._server.changed.wait(max(0.0, wait))
                    continue
            for run in work:  # outside the lock: a callback may publish, ack or close
                run()
            return

    def _collect(self) -> list[Callable[[], None]]:
        """Under the lock: what `process` runs now (queued calls, deliveries within prefetch,
        replies), in that order."""
        work: list[Callable[[], None]] = list(self._soon)
        self._soon.clear()
        for consumer in list(self._consumers.values()):
            queue = self._server._queues.get(consumer.queue)
            while queue is not None and queue.ready and consumer.unacked < consumer.prefetch:
                message = queue.ready.popleft()
                if message.expires is not None and message.expires <= time.monotonic():
                    self._server._dead(queue, message)  # never delivered once expired
                    continue
                tag = next(self._tags)
                self._unacked[tag] = (queue.name, message, consumer)
                consumer.unacked += 1
                work.append(_bind(consumer.callback, self._delivery(tag, message)))
        on_reply = self._on_reply
        while self._replies and on_reply is not None:
            work.append(_bind(on_reply, self._delivery(0, self._replies.popleft())))
        return work

    def call_soon(self, fn: Callable[[], None]) -> None:
        with self._server.changed:
            self._check()
            self._soon.append(fn)
            self._server.changed.notify_all()

    def close(self) -> None:
        """Closed: whatever it held unacked goes back to its queue, marked redelivered."""
        with self._server.changed:
            if not self._open:
                return
            self._open = False
            for tag in sorted(self._unacked, reverse=True):
                queue, message, _consumer = self._unacked.pop(tag)
                found = self._server._queues.get(queue)
                if found is not None:
                    found.ready.appendleft(replace(message, redelivered=True))
            self._consumers.clear()
            self._soon.clear()
            self._server._forget(self)
            self._server.changed.notify_all()

    @staticmethod
    def _delivery(tag: int, message: _Message) -> Delivery:
        return Delivery(
            tag=tag,
            body=message.body,
            headers=dict(message.headers),
            reply_to=message.reply_to,
            correlation_id=message.correlation_id,
            redelivered=message.redelivered,
        )


def _bind(callback: Callable[[Delivery], None], delivery: Delivery) -> Callable[[], None]:
    return lambda: callback(delivery)


if TYPE_CHECKING:
    def _is_a_broker(broker: MemoryBroker) -> Broker:  # mypy checks the seam is kept
        return broker
