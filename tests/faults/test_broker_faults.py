"""The fleet across broker faults: restarts, a kill -9, connections closed by the broker."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from faults.fleet import FaultFleet, Load, describe, results_dir, wait_all_done
from faults.history import save
from faults.nodes import RabbitNode

SLOTS = 2
CHUNK = 4  # WARREN_ROUTER_CHUNK of the fault fleet: a slot holds at most one chunk


def _restart(node: RabbitNode) -> None:
    node.stop_app()
    time.sleep(3)
    node.start_app()


def _kill9(node: RabbitNode) -> None:
    node.kill9()
    time.sleep(1)
    node.start()


def _close_all(node: RabbitNode) -> None:
    node.close_all_connections()


FAULTS: dict[str, Callable[[RabbitNode], None]] = {
    "broker_restart": _restart,
    "broker_kill9": _kill9,
    "broker_close_connections": _close_all,
}


# Successes go to a Redis stream, and for a restart also to a queue on the failing broker
# itself (issue 13's storm: the finishing connection to it did not come back).
CASES = [
    ("broker_restart", "redis+stream"),
    ("broker_restart", "amqp"),
    ("broker_kill9", "redis+stream"),
    ("broker_close_connections", "redis+stream"),
]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("fault", "destination"), CASES)
def test_async_load_survives_a_broker_fault_with_at_most_one_rerun_per_invocation_in_flight(
    fault_fleet: FaultFleet, fault: str, destination: str
) -> None:
    # Given a worker, a router and a client submitting 600 async invocations of a 50 ms handler
    # whose successes go to a destination (a Redis stream, or a queue on the same broker)
    fleet = fault_fleet
    done, history = fleet.recording_function("rec", destination=destination)
    history.scenario = f"{fault}-{destination.split('+')[0]}"
    fleet.worker(slots=SLOTS)
    fleet.router()
    load = Load(fleet, "rec", history, total=600).start()
    fleet.wait_for(lambda: len(fleet.completions(done)) >= 40, timeout=60, what="a start")
    # When the broker fails mid-run
    history.mark_fault()
    FAULTS[fault](fleet.node)
    history.mark_back()
    load.join(timeout=120)
    # Then every accepted invocation completes, and a handler ran again only for the
    # invocations that were in flight when the fault hit (one chunk per slot)
    wait_all_done(fleet, done, history, timeout=120)
    verdict = history.check(fleet.completions(done), in_flight=SLOTS * CHUNK)
    save(verdict, results_dir())
    assert verdict.accepted == 600, describe(verdict, fleet)
    assert verdict.lost == 0, describe(verdict, fleet)
    if fault != "broker_kill9":
        assert verdict.extra_runs <= SLOTS * CHUNK, describe(verdict, fleet)
    # A broker killed with -9 may also redeliver work whose acks it had not written to disk
    # yet: more re-runs than the chunks in flight, but never a second re-run (no storm).
    assert verdict.max_runs <= 2, describe(verdict, fleet)
    assert all(p.poll() is None for p in fleet.procs), "a process died instead of recovering"
