"""Topics as the CLI and the client use them: create, subscribe, publish (SNS's operations)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from warren import codec
from warren.aws import iso_time
from warren.errors import InvalidParameter
from warren.store.topics import TopicStore
from warren.topic import (
    MAX_MESSAGE_BYTES,
    MESSAGE_KIND,
    Subscription,
    TopicMessage,
    check_name,
    parse_attributes,
)


class TopicBroker(Protocol):
    """Topics on the message broker (broker_adapters.topics.TopicBus is RabbitMQ's): an
    exchange per topic, a durable queue per subscription, confirmed publishes."""

    def create(self, topic: str) -> None: ...
    def delete(self, topic: str, subscription_ids: list[str]) -> None: ...
    def subscribe(self, topic: str, subscription_id: str) -> None: ...
    def unsubscribe(self, topic: str, subscription_id: str) -> None: ...
    def publish(self, topic: str, body: bytes, message_id: str) -> None: ...
    def close(self) -> None: ...


class FunctionLookup(Protocol):
    def get_function(self, name: str, qualifier: str | None = None) -> Any: ...


class Topics:
    """Topics of one fleet: their list and subscriptions in Redis, their messages on RabbitMQ.

    A subscription's queue is bound before `subscribe` returns, so every message published
    after that reaches it; the relay in `warren router` turns each into an async invocation.
    """

    def __init__(self, store: TopicStore, bus: TopicBroker,
                 functions: FunctionLookup | None = None) -> None:
        self.store = store
        self.bus = bus
        self._functions = functions

    def create(self, name: str) -> str:
        check_name(name)
        self.bus.create(name)
        self.store.create(name)
        return name

    def delete(self, name: str) -> None:
        self.store.require(name)
        subscriptions = self.store.delete(name)
        self.bus.delete(name, [s.id for s in subscriptions])

    def names(self) -> list[str]:
        return self.store.names()

    def subscriptions(self, name: str) -> list[Subscription]:
        self.store.require(name)
        return self.store.subscriptions(name)

    def subscribe(self, name: str, function: str, *, filter_policy: str | None = None,
                  raw: bool = False) -> Subscription:
        self.store.require(name)
        subscription = Subscription.new(name, function, filter_policy, raw)
        if self._functions is not None:
            self._functions.get_function(subscription.function_name, subscription.qualifier)
        self.bus.subscribe(name, subscription.id)
        self.store.add(subscription)
        return subscription

    def unsubscribe(self, name: str, subscription_id: str) -> Subscription:
        subscription = self.store.remove(name, subscription_id)
        self.bus.unsubscribe(name, subscription_id)
        return subscription

    def publish(self, name: str, message: str, *, subject: str | None = None,
                attributes: Mapping[str, Any] | Sequence[str] | None = None) -> str:
        """Publish one message; returns its MessageId once RabbitMQ confirmed it."""
        if not isinstance(message, str) or not message:
            raise InvalidParameter("a message is a non-empty string (JSON goes as its text)")
        if subject is not None and not 1 <= len(subject) <= 100:
            raise InvalidParameter("a subject is 1-100 characters")
        typed = parse_attributes(attributes)
        if len(typed) > 10:
            raise InvalidParameter("at most 10 message attributes")
        body = TopicMessage(str(uuid.uuid4()), check_name(name), message, subject, typed,
                            iso_time(), int(time.time() * 1000))
        encoded = codec.encode(MESSAGE_KIND, body.to_dict())
        if len(encoded) > MAX_MESSAGE_BYTES + 1024:
            raise InvalidParameter("a message with its attributes is at most 256 KB")
        self.bus.publish(name, encoded, body.id)
        return body.id

    def close(self) -> None:
        self.bus.close()
