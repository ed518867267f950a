"""The fleet across its own processes killed with -9: a worker, a router."""

from __future__ import annotations

import signal

import pytest

from faults.fleet import FaultFleet, Load, describe, results_dir, wait_all_done
from faults.history import save

SLOTS = 2
CHUNK = 4


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("process", ["worker", "router"])
def test_async_load_survives_a_process_killed_with_minus_nine(
    fault_fleet: FaultFleet, process: str
) -> None:
    # Given a worker, a router and 600 async invocations being submitted
    fleet = fault_fleet
    done, history = fleet.recording_function("rec")
    history.scenario = f"{process}_kill9"
    worker = fleet.worker(slots=SLOTS)
    router = fleet.router()
    load = Load(fleet, "rec", history, total=600).start()
    fleet.wait_for(lambda: len(fleet.completions(done)) >= 40, timeout=60, what="a start")
    # When that process is killed with -9 and a new one started
    history.mark_fault()
    victim = worker if process == "worker" else router
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    if process == "worker":
        fleet.worker(slots=SLOTS)
    else:
        fleet.router()
    history.mark_back()
    load.join(timeout=120)
    # Then everything completes; only the killed worker's chunks ran again
    wait_all_done(fleet, done, history, timeout=120)
    verdict = history.check(fleet.completions(done), in_flight=SLOTS * CHUNK)
    save(verdict, results_dir())
    assert verdict.accepted == 600 and verdict.lost == 0, describe(verdict, fleet)
    assert verdict.extra_runs <= SLOTS * CHUNK, describe(verdict, fleet)
    assert verdict.max_runs <= 2, describe(verdict, fleet)
