"""Async destinations: durable queues on the fleet's broker or Redis streams, records as JSON."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import redis

from broker_adapters.amqp import Backbone
from warren.codec import dumps_json
from warren.errors import InvalidParameter
from warren.keys import Keys
from warren.ports import RecordSink
from warren.settings import Settings
from warren.store.redis import connect, redis_errors


def open_destination(
    uri: str, settings: Settings, redis_client: redis.Redis[bytes] | None = None
) -> RecordSink:
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
        client = redis_client or connect(settings.redis)
        return StreamDestination(uri, name, client, owns=redis_client is None)
    raise InvalidParameter(
        f"destination {uri!r} is invalid: use amqp:///QUEUE or redis+stream:///STREAM"
    )


class QueueDestination:
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


class StreamDestination:
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
        self._open: dict[str, RecordSink] = {}
        self._lock = threading.Lock()

    def get(self, uri: str) -> RecordSink:
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
