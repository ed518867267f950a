"""Async destinations: durable queues on the fleet's broker or Redis streams, records as JSON."""

from __future__ import annotations

import threading
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis

from broker_adapters.amqp import Backbone
from warren.codec import dumps_json
from warren.errors import InvalidParameter
from warren.keys import Keys
from warren.settings import Settings
from warren.store.redis import redis_errors


class RecordSink(Protocol):
    """Where invocation records go: `send` returns once the record is durably stored."""

    uri: str

    def send(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class Destination:
    """Base of the destination kinds; `Destination.from_uri(uri, settings)` opens one."""

    uri: str

    @staticmethod
    def from_uri(
        uri: str, settings: Settings, redis_client: redis.Redis[bytes] | None = None
    ) -> Destination:
        return open_destination(uri, settings, redis_client)

    def send(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def open_destination(
    uri: str, settings: Settings, redis_client: redis.Redis[bytes] | None = None
) -> Destination:
    """`amqp:///QUEUE` (a durable queue on the fleet's broker) or `redis+stream:///STREAM`."""
    parts = urlsplit(uri)
    name = parts.path.lstrip("/")
    if not name or parts.netloc:
        raise InvalidParameter(
            f"destination {uri!r} is invalid: use amqp:///QUEUE or redis+stream:///STREAM"
        )
    if parts.scheme == "amqp":
        return QueueDestination(uri, name, settings)
    if parts.scheme == "redis+stream":
        client = redis_client or redis.Redis.from_url(settings.redis.url)
        return StreamDestination(uri, name, client, owns=redis_client is None)
    raise InvalidParameter(
        f"destination {uri!r} is invalid: use amqp:///QUEUE or redis+stream:///STREAM"
    )


class QueueDestination(Destination):
    """A durable queue; a record is sent once RabbitMQ confirmed it."""

    def __init__(self, uri: str, queue: str, settings: Settings) -> None:
        self.uri = uri
        self.queue = queue
        self._backbone = Backbone(
            settings.amqp, Keys(settings.prefix), name="warren-destination"
        )
        self._backbone.declare_queue(queue)
        self._lock = threading.Lock()  # one pika connection: one thread at a time

    def send(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._backbone.publish(self.queue, dumps_json(record), confirm=True)

    def close(self) -> None:
        self._backbone.close()


class StreamDestination(Destination):
    """A Redis stream; a record is sent once XADD was acknowledged (field `record`, JSON)."""

    def __init__(
        self, uri: str, stream: str, client: redis.Redis[bytes], owns: bool = False
    ) -> None:
        self.uri = uri
        self.stream = stream
        self._redis = client
        self._owns = owns

    def send(self, record: dict[str, Any]) -> None:
        with redis_errors(f"writing to Redis stream {self.stream!r}"):
            self._redis.xadd(self.stream, {"record": dumps_json(record)})

    def close(self) -> None:
        if self._owns:
            self._redis.close()


class DestinationSet:
    """Opened destinations, by URI, shared by one process's threads."""

    def __init__(self, settings: Settings, redis_client: redis.Redis[bytes] | None = None) -> None:
        self._settings = settings
        self._redis = redis_client
        self._open: dict[str, Destination] = {}
        self._lock = threading.Lock()

    def get(self, uri: str) -> Destination:
        with self._lock:
            if uri not in self._open:
                self._open[uri] = open_destination(uri, self._settings, self._redis)
            return self._open[uri]

    def send(self, uri: str, record: dict[str, Any]) -> None:
        self.get(uri).send(record)

    def close(self) -> None:
        with self._lock:
            for dest in self._open.values():
                dest.close()
            self._open.clear()
