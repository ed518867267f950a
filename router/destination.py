"""Async destinations: durable queues on the fleet's broker or Redis streams, records as JSON."""

from __future__ import annotations

import threading
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis

from broker_adapters.amqp import Backbone
from warren.codec import dumps_json
from warren.errors import InvalidParameter, StoreUnavailable, Unavailable
from warren.keys import Topology
from warren.settings import Settings
from warren.store.connection import redis_client as connect_redis


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
        client = redis_client or connect_redis(settings.redis.url)
        return StreamDestination(uri, name, client, owns=redis_client is None)
    raise InvalidParameter(
        f"destination {uri!r} is invalid: use amqp:///QUEUE or redis+stream:///STREAM"
    )


class QueueDestination(Destination):
    """A durable queue; a record is sent once RabbitMQ confirmed it.

    The connection is opened on first use and again after it broke (a broker restart, a
    connection the broker closed): a destination outlives any one connection.
    """

    def __init__(self, uri: str, queue: str, settings: Settings) -> None:
        self.uri = uri
        self.queue = queue
        self._settings = settings
        self._backbone: Backbone | None = None
        self._lock = threading.Lock()  # one pika connection: one thread at a time
        with self._lock:
            self._connected()

    def _connected(self) -> Backbone:
        backbone = self._backbone
        if backbone is None or not backbone.alive():
            if backbone is not None:
                backbone.close()
            self._backbone = None
            backbone = Backbone(
                self._settings.amqp, Topology(self._settings.prefix), name="warren-destination"
            )
            backbone.declare_queue(self.queue)
            self._backbone = backbone
        return backbone

    def send(self, record: dict[str, Any]) -> None:
        with self._lock:
            backbone = self._connected()
            try:
                backbone.publish(self.queue, dumps_json(record), confirm=True)
            except Unavailable:
                backbone.close()  # the next send reconnects
                self._backbone = None
                raise

    def close(self) -> None:
        with self._lock:
            if self._backbone is not None:
                self._backbone.close()
                self._backbone = None


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
        try:
            self._redis.xadd(self.stream, {"record": dumps_json(record)})
        except redis.RedisError as exc:
            raise StoreUnavailable(f"cannot write to Redis stream {self.stream!r}: {exc}") from None

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
