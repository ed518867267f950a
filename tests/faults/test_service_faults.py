"""The fleet across Redis restarts and network blackholes (to Redis or to RabbitMQ)."""

from __future__ import annotations

import time

import pytest

from faults.fleet import FaultFleet, Load, describe, results_dir, wait_all_done
from faults.history import save
from faults.nodes import Blackhole, RedisNode

SLOTS = 2
CHUNK = 4


def _check(fleet: FaultFleet, done: str, history: object, scenario: str, total: int) -> None:
    wait_all_done(fleet, done, history, timeout=150)  # type: ignore[arg-type]
    verdict = history.check(fleet.completions(done), in_flight=SLOTS * CHUNK)  # type: ignore[attr-defined]
    verdict.scenario = scenario
    save(verdict, results_dir())
    assert verdict.accepted == total, describe(verdict, fleet)
    assert verdict.lost == 0, describe(verdict, fleet)
    assert verdict.extra_runs <= SLOTS * CHUNK, describe(verdict, fleet)
    assert all(p.poll() is None for p in fleet.procs), "a process died instead of recovering"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_async_load_survives_a_redis_restart(
    fault_fleet: FaultFleet, healthy_redis: RedisNode
) -> None:
    # Given a fleet whose Redis (registry, leases, logs, the success stream) is our own
    fleet = fault_fleet
    done, history = fleet.recording_function("rec")
    fleet.worker(slots=SLOTS)
    fleet.router()
    load = Load(fleet, "rec", history, total=400).start()
    fleet.wait_for(lambda: len(fleet.completions(done)) >= 40, timeout=60, what="a start")
    # When Redis restarts (down for 3 s; its append-only file keeps the data)
    history.mark_fault()
    healthy_redis.restart(down_s=3)
    history.mark_back()
    load.join(timeout=120)
    # Then everything completes, with at most the in-flight chunks run again
    _check(fleet, done, history, "redis_restart", 400)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("service", ["rabbitmq", "redis"])
def test_a_worker_behind_a_blackhole_recovers_once_the_network_is_back(
    fault_fleet: FaultFleet, healthy_redis: RedisNode, service: str
) -> None:
    # Given a worker that reaches RabbitMQ (or Redis) through a link that can go silent
    fleet = fault_fleet
    var = "WARREN_AMQP_URL" if service == "rabbitmq" else "WARREN_REDIS_URL"
    port = fleet.node.port if service == "rabbitmq" else healthy_redis.port
    hole = Blackhole(port)
    try:
        done, history = fleet.recording_function("rec")
        fleet.worker(slots=SLOTS, env={var: hole.url(fleet.env[var])})
        fleet.router()
        load = Load(fleet, "rec", history, total=300).start()
        fleet.wait_for(lambda: len(fleet.completions(done)) >= 40, timeout=60, what="a start")
        # When packets to it are dropped for 25 s (longer than two heartbeats)
        history.mark_fault()
        hole.dark()
        time.sleep(25)
        hole.light()
        history.mark_back()
        load.join(timeout=120)
        # Then the worker finds its way back and nothing is lost
        _check(fleet, done, history, f"blackhole_{service}", 300)
    finally:
        hole.close()
