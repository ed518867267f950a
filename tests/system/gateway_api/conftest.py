"""Fixtures of the gateway tests: one fleet and one gateway per test module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support.fleet import Fleet, make_fleet
from support.gatewaykit import GatewayKit, sweep_dropped_connections


@pytest.fixture(scope="module")
def module_fleet(amqp_url: str, redis_url: str, tmp_path_factory: Any) -> Iterator[Fleet]:
    fleet = make_fleet(amqp_url, redis_url, uuid.uuid4().hex[:12], tmp_path_factory.mktemp("gw"))
    try:
        fleet.worker(slots=2)
        fleet.router()
        yield fleet
    finally:
        fleet.close()


@pytest.fixture(scope="module")
def gw(module_fleet: Fleet) -> Iterator[GatewayKit]:
    kit = GatewayKit(module_fleet)
    yield kit
    kit.close()


@pytest.fixture(scope="module", autouse=True)
def _sweep_dropped_connections() -> Iterator[None]:
    yield
    sweep_dropped_connections()


