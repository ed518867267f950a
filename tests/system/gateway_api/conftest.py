"""Fixtures of the gateway tests: one fleet and one gateway per test module."""

from __future__ import annotations

import gc
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from support.fleet import Fleet, make_fleet
from support.gatewaykit import GatewayKit


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
    # A request the gateway refused before reading its body (413), or one cut by a broker
    # outage, leaves urllib3 a connection it drops without closing: collect those at the end
    # of their module, not in whichever test happens to run next.
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


