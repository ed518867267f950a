"""Topics on RabbitMQ: a durable fanout exchange per topic, a durable queue per subscription."""

from __future__ import annotations

from typing import Any

import pika
import pika.exceptions

from broker_adapters.amqp_errors import broker_errors
from warren.errors import NotFound
from warren.keys import Keys
from warren.settings import AmqpSettings


class TopicBus:
    """Declares topics and subscriptions, and publishes to a topic with a publisher confirm.

    One connection, one confirming channel; not thread-safe (pika connections are not).
    """

    def __init__(self, amqp: AmqpSettings, keys: Keys) -> None:
        self.amqp = amqp
        self.keys = keys
        params = pika.URLParameters(amqp.url)
        params.connection_attempts = 1
        params.socket_timeout = 10
        params.client_properties = {"connection_name": "warren-topics"}
        with broker_errors(amqp.url):
            self._conn = pika.BlockingConnection(params)
        self._channel: Any = None

    @property
    def channel(self) -> Any:
        if self._channel is None or not self._channel.is_open:
            with broker_errors(self.amqp.url):
                self._channel = self._conn.channel()
                self._channel.confirm_delivery()
        return self._channel

    def create(self, topic: str) -> None:
        with broker_errors(self.amqp.url):
            self.channel.exchange_declare(self.keys.topic_exchange(topic), "fanout", durable=True)

    def delete(self, topic: str, subscription_ids: list[str]) -> None:
        with broker_errors(self.amqp.url):
            for sid in subscription_ids:
                self.channel.queue_delete(self.keys.subscription_queue(topic, sid))
            self.channel.exchange_delete(self.keys.topic_exchange(topic))

    def subscribe(self, topic: str, subscription_id: str) -> None:
        """The subscription's queue, bound: from now on it gets a copy of every message."""
        queue = self.keys.subscription_queue(topic, subscription_id)
        with broker_errors(self.amqp.url):
            self.channel.exchange_declare(self.keys.topic_exchange(topic), "fanout", durable=True)
            self.channel.queue_declare(queue, durable=True)
            self.channel.queue_bind(queue, self.keys.topic_exchange(topic))

    def unsubscribe(self, topic: str, subscription_id: str) -> None:
        with broker_errors(self.amqp.url):
            self.channel.queue_delete(self.keys.subscription_queue(topic, subscription_id))

    def publish(self, topic: str, body: bytes, message_id: str) -> None:
        """Returns once RabbitMQ confirmed the message (queued durably for every
        subscription); NotFound when the topic's exchange does not exist."""
        props = pika.BasicProperties(delivery_mode=2, message_id=message_id)
        with broker_errors(self.amqp.url):
            try:
                self.channel.basic_publish(self.keys.topic_exchange(topic), "", body, props)
            except pika.exceptions.ChannelClosedByBroker as exc:  # 404: no such exchange
                self._channel = None
                raise NotFound(
                    f"topic {topic!r} not found (see `warren topic list`): {exc.reply_text}"
                ) from None

    def close(self) -> None:
        try:
            if self._conn.is_open:
                self._conn.close()
        except (pika.exceptions.AMQPError, OSError):
            pass
