"""The RabbitMQ backbone: one connection's topology, confirmed publishes and acked consumption.

pika is imported only in this package; its exceptions become BrokerUnavailable here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from broker_adapters.amqp_fastpath import PUBLISHER_PATHS, install
from warren.errors import BrokerUnavailable
from warren.keys import DEFAULT_POOL, Keys
from warren.ports import Delivery
from warren.settings import AmqpSettings

if TYPE_CHECKING:
    from warren.ports import Broker

REPLY_TO = "amq.rabbitmq.reply-to"


def redact(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def broker_errors(url: str) -> Iterator[None]:
    """Map pika's (and the socket's) exceptions to BrokerUnavailable with one clear line."""
    try:
        yield
    except pika.exceptions.UnroutableError as exc:
        raise BrokerUnavailable(
            f"RabbitMQ at {redact(url)} returned an unroutable message: {exc}"
        ) from None
    except (pika.exceptions.AMQPError, AMQPConnectorException, OSError) as exc:
        detail = str(exc) or type(exc).__name__
        raise BrokerUnavailable(f"cannot reach RabbitMQ at {redact(url)}: {detail}") from None


class Backbone:
    """One BlockingConnection with a confirming channel and a plain one (a warren.ports.Broker).

    Not thread-safe, as pika's connections are not: other threads hand work to the owning
    thread with `call_soon`, which goes through `add_callback_threadsafe`.
    """

    def __init__(
        self,
        amqp: AmqpSettings,
        keys: Keys,
        *,
        name: str = "warren",
        heartbeat_s: int = 60,
    ) -> None:
        self.amqp = amqp
        self.keys = keys
        params = pika.URLParameters(amqp.url)
        params.heartbeat = heartbeat_s
        params.blocked_connection_timeout = 60
        params.connection_attempts = 1
        params.socket_timeout = 10
        params.stack_timeout = 30
        params.client_properties = {"connection_name": name}
        with broker_errors(amqp.url):
            self._conn = pika.BlockingConnection(params)
            self.fastpaths = install(self._conn, enabled=amqp.fastpath, paths=PUBLISHER_PATHS)
            self._confirm = self._conn.channel()  # consuming, acks and declarations
            self._plain = self._conn.channel()
            self._pipeline = self.fastpaths.confirms()
        self._delays: set[int] = set()
        self._declared: set[str] = set()
        self._pools: set[str] = set()

    # -- topology -------------------------------------------------------------------------
    def declare(self, pool: str = DEFAULT_POOL) -> None:
        """Declare the fleet's durable queues (idempotent; a set lookup once done, as callers
        on the hot path declare their function's pool before every publish)."""
        if pool in self._pools:
            return
        for queue in self.keys.all_queues(pool):
            self.declare_queue(queue)
        self._pools.add(pool)

    def declare_queue(self, queue: str) -> None:
        if queue in self._declared:
            return
        with broker_errors(self.amqp.url):
            self._confirm.queue_declare(queue, durable=True)
        self._declared.add(queue)

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
            with broker_errors(self.amqp.url):
                self._confirm.queue_declare(name, durable=True, arguments=args)
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
            method, props, body = self._plain.basic_get(queue, auto_ack=True)
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
                self._pipeline.publish(queue, [body], props)
            else:
                self._plain.basic_publish("", queue, body, props)

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
            self._pipeline.publish(queue, bodies, props)

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
            self._confirm.basic_qos(prefetch_count=prefetch)
            return str(self._confirm.basic_consume(queue, on_message))

    def consume_replies(self, callback: Callable[[Delivery], None]) -> None:
        """Receive direct replies (amq.rabbitmq.reply-to) on the plain channel, no acks."""

        def on_reply(_ch: Any, method: Any, props: Any, body: bytes) -> None:
            callback(
                Delivery(tag=method.delivery_tag, body=body, correlation_id=props.correlation_id)
            )

        with broker_errors(self.amqp.url):
            self._plain.basic_consume(REPLY_TO, on_reply, auto_ack=True)

    def request(self, queue: str, body: bytes, correlation_id: str, expiration_ms: int) -> None:
        """Publish a request whose reply comes back on this connection's direct reply-to."""
        self.publish(
            queue,
            body,
            reply_to=REPLY_TO,
            correlation_id=correlation_id,
            expiration_ms=expiration_ms,
            confirm=False,
        )

    def cancel(self, consumer_tag: str) -> None:
        with broker_errors(self.amqp.url):
            self._confirm.basic_cancel(consumer_tag)

    def ack(self, tag: int, multiple: bool = False) -> None:
        with broker_errors(self.amqp.url):
            self._confirm.basic_ack(tag, multiple=multiple)

    def nack(self, tag: int, requeue: bool = True) -> None:
        with broker_errors(self.amqp.url):
            self._confirm.basic_nack(tag, requeue=requeue)

    def process(self, time_limit: float) -> None:
        """Run I/O and callbacks for up to `time_limit` seconds (returns early once some ran)."""
        with broker_errors(self.amqp.url):
            self._conn.process_data_events(time_limit=time_limit)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the thread that owns this connection (safe to call from any thread)."""
        with broker_errors(self.amqp.url):
            self._conn.add_callback_threadsafe(fn)

    @property
    def is_open(self) -> bool:
        return bool(self._conn.is_open)

    def close(self) -> None:
        try:
            if self._conn.is_open:
                self._conn.close()
        except (pika.exceptions.AMQPError, OSError):
            pass


if TYPE_CHECKING:
    def _is_a_broker(backbone: Backbone) -> Broker:  # mypy checks the seam is kept
        return backbone
