"""The RabbitMQ backbone: one connection's topology, confirmed publishes and acked consumption.

pika is imported only in this package; its exceptions become BrokerUnavailable here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions

from broker_adapters.amqp_errors import REPLY_TO, broker_errors, redact
from broker_adapters.amqp_fastpath import (
    PUBLISHER_PATHS,
    end_wait,
    install,
    socket_fileno,
    undispatched,
)
from broker_adapters.amqp_public import Confirms
from broker_adapters.failover import connection_parameters
from broker_adapters.queues import (
    SYNC_LANE_ARGS,
    other_type,
    queue_arguments,
    report_mismatch,
)
from broker_adapters.rmq_frames import DeliveryFrames
from warren.errors import BrokerUnavailable
from warren.keys import DEFAULT_POOL, Keys
from warren.ports import Delivery
from warren.settings import AmqpSettings

if TYPE_CHECKING:
    from warren.ports import Broker

class Backbone:
    """One BlockingConnection with a consuming channel, a plain one and a confirming one (a
    warren.ports.Broker).

    Not thread-safe, as pika's connections are not: other threads hand work to the owning
    thread with `call_soon`, which goes through `add_callback_threadsafe`.

    Recovery: a channel the broker closes (an error on a declaration or a publish) is opened
    again on next use, except the consuming channel: its deliveries went back to the queue
    with it, so the Backbone reports itself closed (`is_open`, and `process` raises) and its
    owner reconnects. The same holds when the broker cancels the consumer.
    """

    def __init__(
        self,
        amqp: AmqpSettings,
        keys: Keys,
        *,
        name: str = "warren",
        heartbeat_s: int | None = None,
    ) -> None:
        self.amqp = amqp
        self.keys = keys
        self._broken = ""  # why this connection can no longer be used, once it cannot
        self._replies = False  # the plain channel consumes direct replies
        self._admin: Any = None  # declarations: a refused one must not close the consumer
        with broker_errors(amqp.url):
            self._conn = pika.BlockingConnection(connection_parameters(amqp, name, heartbeat_s))
            self.fastpaths = install(self._conn, enabled=amqp.fastpath, paths=PUBLISHER_PATHS)
            self._confirm = self._conn.channel()  # consuming and acks
            self._confirm.add_on_cancel_callback(self._on_cancelled)
            self._plain = self._conn.channel()
            self._plain.add_on_return_callback(self._on_returned)
            self._pipeline = self.fastpaths.confirms()
        self.returned: set[str] = set()  # correlation ids of requests no queue took
        self._delays: set[int] = set()
        # Consumers by tag, and the consuming channel's frame decoder (delivery-frames;
        # None when that fast path is off: deliveries then come through pika's callback).
        self._consumers: dict[bytes, Callable[[Delivery], None]] = {}
        self._parser: DeliveryFrames | None = None
        self._declared: set[str] = set()
        self._pools: set[str] = set()

    # -- channels, recovered on use ------------------------------------------------------
    def _on_cancelled(self, _frame: Any) -> None:
        self._broken = "RabbitMQ cancelled the consumer (its queue was deleted or moved)"

    def _on_returned(self, _ch: Any, _method: Any, props: Any, _body: bytes) -> None:
        # A sync request RabbitMQ could not route: its queue is gone (a broker restart or
        # node loss took the transient sync lane). Declared again on the next call.
        self.returned.add(str(props.correlation_id))
        self._pools.clear()

    def _admin_channel(self) -> Any:
        if self._admin is None or not self._admin.is_open:
            self._admin = self._conn.channel()
        return self._admin

    def _plain_channel(self) -> Any:
        if not self._plain.is_open:
            if self._replies:  # the reply consumer went with it: callers must reconnect
                self._broken = "the reply channel was closed"
                raise BrokerUnavailable(f"RabbitMQ at {redact(self.amqp.url)}: {self._broken}")
            self._plain = self._conn.channel()
            self._plain.add_on_return_callback(self._on_returned)
        return self._plain

    def _confirming(self) -> Confirms:
        if not self._pipeline.is_open:
            self._pipeline = self.fastpaths.confirms()
        return self._pipeline

    # -- topology -------------------------------------------------------------------------
    def declare(self, pool: str = DEFAULT_POOL) -> None:
        """Declare the fleet's durable queues (idempotent; a set lookup once done, as callers
        on the hot path declare their function's pool before every publish)."""
        if pool in self._pools:
            return
        for queue in self.keys.all_queues(pool):
            self.declare_queue(queue)
        sync = self.keys.sync_queue(pool)
        with broker_errors(self.amqp.url):  # the sync lane: transient, classic (keys.py)
            self._admin_channel().queue_declare(sync, durable=False, arguments=SYNC_LANE_ARGS)
        self._declared.add(sync)
        self._pools.add(pool)

    def declare_queue(self, queue: str) -> None:
        if queue in self._declared:
            return
        self._declare(queue, queue_arguments(self.amqp.queue_type), {})
        self._declared.add(queue)

    def _declare(self, queue: str, args: dict[str, Any], extra: dict[str, Any]) -> None:
        with broker_errors(self.amqp.url):
            try:
                self._admin_channel().queue_declare(queue, durable=True, arguments=args)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code != 406:  # PRECONDITION_FAILED: it exists, otherwise made
                    raise
                # The other type but otherwise the same (an older fleet's): use it as it is.
                other = queue_arguments(other_type(self.amqp.queue_type), extra)
                self._admin_channel().queue_declare(queue, durable=True, arguments=other)
                report_mismatch(queue, self.amqp.queue_type, str(exc.reply_text))

    def declare_delay(self, delay_ms: int) -> str:
        """A queue holding messages `delay_ms`, then dead-lettering them to the async queue.

        The TTL is per queue, not per message: with one TTL per queue nothing waits behind a
        longer-lived head message (RabbitMQ expires only at the head).
        """
        name = self.keys.delay_queue(delay_ms)
        if delay_ms not in self._delays:
            args = {
                "x-message-ttl": int(delay_ms),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.keys.async_queue,
            }
            self._declare(name, queue_arguments(self.amqp.queue_type, args), args)
            self._delays.add(delay_ms)
        return name

    def depth(self, queue: str) -> int | None:
        """Messages ready in `queue`, or None when it does not exist."""
        with broker_errors(self.amqp.url):
            channel = self._conn.channel()
            try:
                frame = channel.queue_declare(queue, passive=True)
            except pika.exceptions.ChannelClosedByBroker:
                return None
            channel.close()
            return int(frame.method.message_count)

    def delete_queue(self, queue: str) -> None:
        """Delete `queue` if it exists (tests and teardown)."""
        with broker_errors(self.amqp.url):
            channel = self._conn.channel()
            channel.queue_delete(queue)
            channel.close()
        self._declared.discard(queue)
        self._pools.clear()  # a pool's queues are declared again on next use

    def get(self, queue: str) -> Delivery | None:
        """Take one message off `queue` (acked at once), or None when it is empty."""
        with broker_errors(self.amqp.url):
            method, props, body = self._plain_channel().basic_get(queue, auto_ack=True)
        if method is None:
            return None
        return Delivery(
            tag=method.delivery_tag,
            body=body,
            headers=dict(props.headers or {}),
            reply_to=props.reply_to,
            correlation_id=props.correlation_id,
            redelivered=bool(method.redelivered),
        )

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
        """Publish to `queue` via the default exchange.

        confirm=True: persistent, mandatory, and returns only after the broker confirmed it
        (durably queued). confirm=False: transient, fire-and-forget (replies, sync requests
        whose reply is their acknowledgement).
        """
        props = pika.BasicProperties(
            delivery_mode=2 if confirm else 1,
            headers=headers,
            reply_to=reply_to,
            correlation_id=correlation_id,
            expiration=str(expiration_ms) if expiration_ms is not None else None,
        )
        with broker_errors(self.amqp.url):
            if confirm:
                self._confirming().publish(queue, [body], props)
            else:
                self._plain_channel().basic_publish("", queue, body, props)

    def publish_many(
        self, queue: str, bodies: Sequence[bytes], headers: dict[str, Any] | None = None
    ) -> None:
        """Publish persistent messages back to back, then wait once for all their confirms.

        Confirms are pipelined, not awaited per message: this is how a hop moves many
        messages durably at the cost of about one round trip. Returns only when RabbitMQ has
        confirmed every one; a nack or a return raises BrokerUnavailable (nothing is lost: the
        caller has not acked its input and will redo it).
        """
        if not bodies:
            return
        props = pika.BasicProperties(delivery_mode=2, headers=headers)
        with broker_errors(self.amqp.url):
            self._confirming().publish(queue, bodies, props)

    # -- consuming ------------------------------------------------------------------------
    def consume(self, queue: str, callback: Callable[[Delivery], None], prefetch: int) -> str:
        """Deliver messages of `queue` to `callback` (on this thread, inside `process`)."""

        def on_message(_ch: Any, method: Any, props: Any, body: bytes) -> None:
            callback(
                Delivery(
                    tag=method.delivery_tag,
                    body=body,
                    headers=dict(props.headers or {}),
                    reply_to=props.reply_to,
                    correlation_id=props.correlation_id,
                    redelivered=bool(method.redelivered),
                )
            )

        with broker_errors(self.amqp.url):
            if not self._consumers:  # the first consumer: decode its channel's frames
                parser = DeliveryFrames(self._confirm.channel_number, self._on_frames)
                self._parser = parser if self.fastpaths.decode_deliveries(parser) else None
            self._confirm.basic_qos(prefetch_count=prefetch)
            # Named before it exists: a delivery may be decoded while basic_consume waits.
            tag = f"warren-{id(self):x}-{len(self._consumers) + 1}"
            self._consumers[tag.encode()] = callback
            return str(self._confirm.basic_consume(queue, on_message, consumer_tag=tag))

    def _on_frames(self, tag: int, redelivered: bool, props: Any, body: bytes) -> None:
        """A delivery decoded straight off the consuming channel's frames (delivery-frames):
        to the callback of the consumer it names."""
        assert self._parser is not None
        callback = self._consumers.get(self._parser.consumer_tag)
        if callback is None:  # a consumer this connection never made: RabbitMQ redelivers it
            return
        end_wait(self._conn, self._confirm.channel_number)  # `process` returns, as with pika's
        callback(
            Delivery(
                tag=tag,
                body=body,
                headers=dict(props.headers or {}),
                reply_to=props.reply_to,
                correlation_id=props.correlation_id,
                redelivered=redelivered,
            )
        )

    def consume_replies(self, callback: Callable[[Delivery], None]) -> None:
        """Receive direct replies (amq.rabbitmq.reply-to) on the plain channel, no acks."""

        def on_reply(_ch: Any, method: Any, props: Any, body: bytes) -> None:
            callback(
                Delivery(tag=method.delivery_tag, body=body, correlation_id=props.correlation_id)
            )

        with broker_errors(self.amqp.url):
            self._plain_channel().basic_consume(REPLY_TO, on_reply, auto_ack=True)
        self._replies = True

    def request(
        self,
        queue: str,
        body: bytes,
        correlation_id: str,
        expiration_ms: int,
        reply_to: str | None = None,
    ) -> None:
        """Publish a transient sync request (mandatory: if no queue takes it, RabbitMQ returns
        it and `returned` names its correlation id). Its reply comes back on this connection's
        direct reply-to, or on the Redis list `reply_to` names."""
        reply_to, expiration = reply_to or REPLY_TO, str(expiration_ms)
        with broker_errors(self.amqp.url):
            channel = self._plain_channel()
            if self.fastpaths.send_request(
                channel.channel_number, queue, body, reply_to, correlation_id, expiration
            ):
                return
            props = pika.BasicProperties(
                delivery_mode=1, reply_to=reply_to, correlation_id=correlation_id,
                expiration=expiration,
            )
            channel.basic_publish("", queue, body, props, mandatory=True)

    def cancel(self, consumer_tag: str) -> None:
        with broker_errors(self.amqp.url):
            self._confirm.basic_cancel(consumer_tag)

    def ack(self, tag: int, multiple: bool = False) -> None:
        with broker_errors(self.amqp.url):
            channel = self._confirm
            if not (channel.is_open and self.fastpaths.send_ack(channel.channel_number, tag,
                                                                 multiple)):
                channel.basic_ack(tag, multiple=multiple)

    def nack(self, tag: int, requeue: bool = True) -> None:
        with broker_errors(self.amqp.url):
            self._confirm.basic_nack(tag, requeue=requeue)

    def process(self, time_limit: float) -> None:
        """Run I/O and callbacks for up to `time_limit` seconds (returns early once some ran).

        Raises BrokerUnavailable once the connection, its consuming channel or its consumer is
        gone, so that a loop waiting for deliveries reconnects instead of waiting forever."""
        with broker_errors(self.amqp.url):
            self._conn.process_data_events(time_limit=time_limit)
        if not self.is_open:
            raise BrokerUnavailable(f"RabbitMQ at {redact(self.amqp.url)}: {self.why_closed}")

    def alive(self) -> bool:
        """Read what the broker sent (a close, an EOF) and say whether this is still usable:
        how a connection left idle is checked before a caller relies on it."""
        try:
            self.process(0)
        except BrokerUnavailable:
            return False
        return True

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the thread that owns this connection (safe to call from any thread)."""
        with broker_errors(self.amqp.url):
            self._conn.add_callback_threadsafe(fn)

    def fileno(self) -> int | None:
        """The socket's descriptor: readable when the broker sent something (None: unknown)."""
        return socket_fileno(self._conn)

    def undispatched(self) -> bool:
        """Events read off the socket but not yet run (`process(0)` runs them)."""
        return undispatched(self._conn)

    @property
    def is_open(self) -> bool:
        return bool(self._conn.is_open and self._confirm.is_open and not self._broken)

    @property
    def why_closed(self) -> str:
        if self._broken:
            return self._broken
        if not self._conn.is_open:
            return "the connection was closed"
        return "the consuming channel was closed" if not self._confirm.is_open else "open"

    def close(self) -> None:
        try:
            if self._conn.is_open:
                self._conn.close()
        except (pika.exceptions.AMQPError, OSError):
            pass


if TYPE_CHECKING:
    def _is_a_broker(backbone: Backbone) -> Broker:  # mypy checks the seam is kept
        return backbone
