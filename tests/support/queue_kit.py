"""Fixtures and helpers of the RabbitMQ queue source tests (test_source_queue*.py)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pika
import pytest
import redis

from broker_adapters.sources import open_source
from warren.source import Source


@pytest.fixture
def store(conn: redis.Redis) -> redis.Redis:
    """Warren's Redis, where the source keeps its mapping state (conftest's connection)."""
    return conn


@pytest.fixture
def channel(amqp_url):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    ch = connection.channel()
    ch.confirm_delivery()
    yield ch
    connection.close()


@pytest.fixture
def queue(channel, unique) -> Iterator[str]:
    name = f"test-src-{unique}"
    channel.queue_declare(name, durable=True)
    yield name
    channel.queue_delete(name)


def queue_uri(amqp_url: str, queue: str, port: int | None = None) -> str:
    parts = urlsplit(amqp_url)
    host = f"{parts.hostname}:{port or parts.port or 5672}"
    return f"amqp://{parts.username}:{parts.password}@{host}{parts.path or '/%2F'}/{queue}"


def open_queue(amqp_url, store, queue, unique, port=None, **options) -> Source:
    return open_source(
        queue_uri(amqp_url, queue, port),
        mapping_id=f"m-{unique}",
        redis=store,
        prefix=f"t-{unique}",
        options={"consumer": "c1", **options},
    )


def publish(channel, queue, bodies, **props) -> None:
    for body in bodies:
        channel.basic_publish("", queue, body, pika.BasicProperties(**props))


def read_at_least(source, count: int, size: int | None = None) -> list:
    """Read until `count` records are held (each read waits up to 2 s)."""
    held: list = []
    while len(held) < count:
        held += source.read(size or count, 2.0)
    return held


def depth(channel, queue) -> tuple[int, int]:
    ok = channel.queue_declare(queue, passive=True).method
    return ok.message_count, ok.consumer_count
