"""The gateway's non-blocking broker path: one asyncio connection, direct replies by request id.

A gateway process keeps one pika `AsyncioConnection` on its event loop (no thread is held while
a sync invoke waits, however long): a channel that consumes `amq.rabbitmq.reply-to` and
publishes sync requests with it as their reply-to, and a channel in confirm mode for `Event`
invocations. Each waiting request is a future in a dict keyed by request id; the reply consumer
resolves it. A connection that goes away fails every pending future with BrokerUnavailable, and
the next call opens a new connection.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from typing import Any

import pika
import pika.exceptions
from pika.adapters.asyncio_connection import AsyncioConnection

from broker_adapters.amqp_errors import REPLY_TO, redact
from broker_adapters.amqp_fastpath import install_on_asyncio
from broker_adapters.queues import SYNC_LANE_ARGS, queue_arguments
from warren.errors import BrokerUnavailable
from warren.keys import DEFAULT_POOL, Keys
from warren.settings import AmqpSettings

log = logging.getLogger("warren.gateway.broker")

CONNECT_TIMEOUT_S = 10.0


class _Link:
    """One open connection and its two channels; replaced whole when it fails."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.requests: Any = None  # consumes direct replies, publishes sync requests
        self.confirms: Any = None  # confirm mode: Event invocations, queue declarations
        self.declared: set[str] = set()
        self.published = 0
        self.waiting_confirms: dict[int, asyncio.Future[None]] = {}
        self.returned: set[str] = set()
        self.other: set[asyncio.Future[Any]] = set()  # channel opens, declarations
        self.closed = False


class AsyncBroker:
    """Sync requests and confirmed publishes for one event loop; not shared across loops."""

    def __init__(
        self, amqp: AmqpSettings, topology: Keys, *, name: str = "warren-gateway"
    ) -> None:
        self.amqp = amqp
        self.topology = topology
        self.name = name
        self._link: _Link | None = None
        self._turn = itertools.count()
        self._connecting: asyncio.Future[_Link] | None = None
        self._replies: dict[str, asyncio.Future[bytes]] = {}
        self._ids = itertools.count(1)

    # -- public ---------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        link = self._link
        return link is not None and not link.closed and bool(link.conn.is_open)

    @property
    def waiting(self) -> int:
        """Sync requests whose reply has not come yet."""
        return len(self._replies)

    async def connect(self) -> None:
        """Open the connection now (idempotent); BrokerUnavailable if RabbitMQ is unreachable."""
        await self._ready()

    async def declare(self, pool: str = DEFAULT_POOL) -> None:
        """The fleet's queues for `pool`, declared once per connection."""
        link = await self._ready()
        durable = [(q, True, queue_arguments(self.amqp.queue_type))
                   for q in self.topology.all_queues(pool)]
        # The sync lane: transient and classic (broker_adapters/queues.py).
        for queue, lasting, args in [*durable, (self.topology.sync_queue(pool), False,
                                                SYNC_LANE_ARGS)]:
            if queue in link.declared:
                continue
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._guard(
                link,
                lambda q=queue, d=done, keep=lasting, a=args: link.confirms.queue_declare(
                    q, durable=keep, arguments=a, callback=lambda frame: _settle(d, frame),
                ),
            )
            await self._await(link, done)
            link.declared.add(queue)

    def expect(self, request_id: str) -> asyncio.Future[bytes]:
        """A future for the reply to `request_id`: register it before publishing the request."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = future
        return future

    def forget(self, request_id: str) -> None:
        """Stop waiting for `request_id` (timed out or cancelled): a late reply is dropped."""
        self._replies.pop(request_id, None)

    async def request(
        self,
        queue: str,
        body: bytes,
        *,
        correlation_id: str | None,
        expiration_ms: int,
    ) -> None:
        """Publish a transient request whose replies come back to this connection.

        Each reply resolves the future `expect` made for its correlation id (a chunk sent
        without one gets one reply per invocation, each under its request id).
        """
        link = await self._ready()
        props = pika.BasicProperties(
            delivery_mode=1,
            reply_to=REPLY_TO,
            correlation_id=correlation_id,
            expiration=str(expiration_ms),
        )
        self._guard(link, lambda: link.requests.basic_publish("", queue, body, props))

    async def publish(self, queue: str, bodies: Sequence[bytes]) -> None:
        """Persistent, mandatory publishes; returns once RabbitMQ confirmed every one."""
        link = await self._ready()
        futures = []
        for body in bodies:
            link.published += 1
            tag = link.published
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            link.waiting_confirms[tag] = future
            futures.append(future)
            props = pika.BasicProperties(delivery_mode=2, message_id=str(tag))
            self._guard(
                link,
                lambda b=body, p=props: link.confirms.basic_publish(
                    "", queue, b, p, mandatory=True
                ),
            )
        for future in futures:
            await self._await(link, future)

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is None or link.closed:
            return
        link.closed = True  # ours: not a loss to report
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        link.conn.add_on_close_callback(lambda _c, _e: _settle(done, None))
        try:
            link.conn.close()
            await asyncio.wait_for(done, 5)
        except (pika.exceptions.AMQPError, asyncio.TimeoutError, OSError):
            pass

    # -- connection -----------------------------------------------------------------------
    async def _ready(self) -> _Link:
        if self.is_open:
            assert self._link is not None
            return self._link
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
        try:
            return await asyncio.shield(self._connecting)
        except BrokerUnavailable:
            raise
        except (pika.exceptions.AMQPError, OSError, asyncio.TimeoutError) as exc:
            raise self._unavailable(exc) from None

    async def _open(self) -> _Link:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[Any] = loop.create_future()
        # Several brokers (a cluster): each connect tries the next one.
        urls = self.amqp.urls or (self.amqp.url,)
        params = pika.URLParameters(urls[next(self._turn) % len(urls)])
        params.heartbeat = 30
        params.connection_attempts = 1
        params.socket_timeout = CONNECT_TIMEOUT_S
        params.client_properties = {"connection_name": self.name}
        conn = AsyncioConnection(
            params,
            on_open_callback=lambda c: _settle(opened, c),
            on_open_error_callback=lambda _c, e: _fail(opened, self._unavailable(e)),
            custom_ioloop=loop,
        )
        await asyncio.wait_for(opened, CONNECT_TIMEOUT_S)
        # A request's frames leave in one send() at once, not on the loop's next write turn.
        install_on_asyncio(conn, enabled=self.amqp.fastpath)
        link = _Link(conn)
        conn.add_on_close_callback(lambda _c, reason: self._lost(link, reason))
        link.requests = await self._channel(link)
        link.confirms = await self._channel(link)
        consuming: asyncio.Future[Any] = loop.create_future()
        link.requests.basic_consume(
            REPLY_TO, self._on_reply, auto_ack=True, callback=lambda f: _settle(consuming, f)
        )
        confirming: asyncio.Future[Any] = loop.create_future()
        link.confirms.add_on_return_callback(
            lambda _ch, _m, props, _b: link.returned.add(str(props.message_id))
        )
        link.confirms.confirm_delivery(
            lambda frame: self._on_confirm(link, frame),
            callback=lambda f: _settle(confirming, f),
        )
        await self._await(link, consuming)
        await self._await(link, confirming)
        self._link = link
        log.info("connected to RabbitMQ at %s", redact(self.amqp.url))
        return link

    async def _channel(self, link: _Link) -> Any:
        opened: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        link.conn.channel(on_open_callback=lambda ch: _settle(opened, ch))
        channel = await self._await(link, opened)
        channel.add_on_close_callback(lambda _ch, reason: self._channel_closed(link, reason))
        return channel

    def _channel_closed(self, link: _Link, reason: Any) -> None:
        # A channel closed by the broker (e.g. a refused declaration) makes the link unusable:
        # close the connection so that the next call starts afresh.
        if not link.closed and link.conn.is_open:
            try:
                link.conn.close()
            except pika.exceptions.AMQPError:
                pass
        self._lost(link, reason)

    def _lost(self, link: _Link, reason: Any) -> None:
        if link.closed:
            return
        link.closed = True
        if self._link is link:
            self._link = None
        error = self._unavailable(reason)
        log.warning("%s", error)
        for future in link.waiting_confirms.values():
            _fail(future, error)
        link.waiting_confirms.clear()
        for other in link.other:
            _fail(other, error)
        link.other.clear()
        # Replies come back only on the connection that sent the request.
        replies, self._replies = self._replies, {}
        for reply in replies.values():
            _fail(reply, error)

    # -- callbacks ------------------------------------------------------------------------
    def _on_reply(self, _ch: Any, _method: Any, props: Any, body: bytes) -> None:
        future = self._replies.pop(props.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(body)

    def _on_confirm(self, link: _Link, frame: Any) -> None:
        method = frame.method
        ack = isinstance(method, pika.spec.Basic.Ack)
        last = int(method.delivery_tag)
        tags = [t for t in link.waiting_confirms if t <= last] if method.multiple else [last]
        for tag in tags:
            future = link.waiting_confirms.pop(tag, None)
            if future is None:
                continue
            if not ack:
                _fail(future, BrokerUnavailable("RabbitMQ refused (nacked) an invocation"))
            elif str(tag) in link.returned:
                link.returned.discard(str(tag))
                _fail(future, BrokerUnavailable("RabbitMQ could not route an invocation"))
            else:
                _settle(future, None)

    # -- errors ---------------------------------------------------------------------------
    def _guard(self, link: _Link, publish: Any) -> None:
        try:
            publish()
        except (pika.exceptions.AMQPError, OSError) as exc:
            self._lost(link, exc)
            raise self._unavailable(exc) from None

    async def _await(self, link: _Link, future: asyncio.Future[Any]) -> Any:
        if link.closed and not future.done():
            raise self._unavailable("the connection closed")
        link.other.add(future)
        try:
            return await future
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise self._unavailable(exc) from None
        finally:
            link.other.discard(future)

    def _unavailable(self, reason: Any) -> BrokerUnavailable:
        if isinstance(reason, BrokerUnavailable):
            return reason
        detail = str(reason) or type(reason).__name__
        return BrokerUnavailable(f"cannot reach RabbitMQ at {redact(self.amqp.url)}: {detail}")


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
