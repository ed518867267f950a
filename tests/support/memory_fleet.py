"""A fleet's stores on the test's Redis with the in-memory broker: the loops, in-process."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from broker_adapters.memory import MemoryServer
from router.admission.semaphore import Semaphore
from router.destination import DestinationSet
from router.retry import RetryPolicy
from router.router import Router
from warren.invocation import Invocation, decode_chunk
from warren.keys import Keys
from warren.ports import Broker, Delivery
from warren.settings import Settings
from warren.store.codes import CodeStore
from warren.store.logs import LogStore
from warren.store.registry import Registry
from workers.completion import Completion

THROTTLE_MS = 100


class World:
    """One fleet's stores on the test's Redis, and a memory broker for its messages."""

    def __init__(self, conn: Any, redis_url: str, prefix: str) -> None:
        self.conn = conn
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.registry = Registry(conn, CodeStore(conn, prefix), prefix=prefix)
        self.semaphore = Semaphore(conn, prefix, 1000, self.registry.reservations)
        self.settings = Settings.from_environ({"WARREN_PREFIX": prefix}, redis_url=redis_url)
        self.destinations = DestinationSet(self.settings, conn)
        self.policy = RetryPolicy(delays_s=(0.05,), throttle_delay_s=THROTTLE_MS / 1000)
        self.logs = LogStore(conn, prefix)
        self.server = MemoryServer()

    def connect(self, name: str = "test") -> Broker:
        return self.server.connect(self.keys, name)

    def completion(self) -> Completion:
        return Completion(self.conn, self.prefix, self.semaphore, self.logs, self.destinations,
                          self.policy)

    def router(self) -> Router:
        return Router(self.connect, self.semaphore, self.destinations, self.policy)


@pytest.fixture
def world(conn, redis_url, unique) -> Iterator[World]:
    w = World(conn, redis_url, f"test-loops-{unique}")
    yield w
    w.destinations.close()
    keys = list(conn.scan_iter(f"{w.prefix}*"))
    if keys:
        conn.delete(*keys)


def take(broker: Broker, queue: str, count: int, timeout_s: float = 10.0) -> list[Delivery]:
    """Consume `count` deliveries of `queue` (left unacked)."""
    got: list[Delivery] = []
    broker.consume(queue, got.append, prefetch=count)
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        assert time.monotonic() < deadline, f"{len(got)} of {count} deliveries"
        broker.process(0.05)
    return got


def wait_for(check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return value


def queued(world: World, queue: str) -> list[Invocation]:
    return [inv for body in world.server.ready(queue) for inv in decode_chunk(body)]


