"""The fault suite's own services: a RabbitMQ node and a Redis server per session, by PID."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from faults.fleet import FaultFleet
from faults.nodes import RabbitNode, RedisNode, rabbit_available

IN_CI = __import__("os").environ.get("CI", "").lower() in ("1", "true", "yes")


def _need(ok: bool, what: str) -> None:
    if not ok:
        if IN_CI:
            pytest.fail(f"{what} is needed by the fault suite")
        pytest.skip(f"{what} is needed by the fault suite")


@pytest.fixture(scope="session")
def rabbit() -> Iterator[RabbitNode]:
    """A RabbitMQ node of the suite's own; tests that stop or kill it start it again."""
    _need(rabbit_available(), "rabbitmq-server")
    node = RabbitNode()
    node.start()
    try:
        yield node
    finally:
        node.destroy()


@pytest.fixture
def healthy_rabbit(rabbit: RabbitNode) -> RabbitNode:
    """The suite's node, started again if a previous test left it down."""
    if rabbit.proc is None or rabbit.proc.poll() is not None:
        rabbit.start()
    else:
        rabbit.ctl("start_app", check=False)
        rabbit.wait_ready()
    return rabbit


@pytest.fixture(scope="session")
def own_redis() -> Iterator[RedisNode]:
    _need(shutil.which("redis-server") is not None, "redis-server")
    node = RedisNode()
    node.start()
    try:
        yield node
    finally:
        node.destroy()


@pytest.fixture
def healthy_redis(own_redis: RedisNode) -> RedisNode:
    if own_redis.proc is None or own_redis.proc.poll() is not None:
        own_redis.start()
    return own_redis


@pytest.fixture
def fault_fleet(
    healthy_rabbit: RabbitNode, healthy_redis: RedisNode, unique: str, tmp_path: Path
) -> Iterator[FaultFleet]:
    fleet = FaultFleet(
        healthy_rabbit, healthy_redis.url, f"f{unique}", tmp_path, WARREN_ROUTER_CHUNK="4"
    )
    try:
        yield fleet
    finally:
        fleet.close()
