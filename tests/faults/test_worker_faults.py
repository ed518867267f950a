"""A worker frozen past its leases, and a worker whose finishing publish the broker refuses."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker_adapters.amqp import Backbone
from faults.fleet import FaultFleet, describe, results_dir, wait_all_done
from faults.history import save
from faults.nodes import RabbitNode, RedisNode

LIMIT = 2


@pytest.fixture
def chunk1_fleet(
    healthy_rabbit: RabbitNode, healthy_redis: RedisNode, unique: str, tmp_path: Path
) -> Iterator[FaultFleet]:
    """One invocation per chunk: a frozen slot holds exactly one invocation."""
    fleet = FaultFleet(
        healthy_rabbit, healthy_redis.url, f"f{unique}", tmp_path, WARREN_ROUTER_CHUNK="1"
    )
    try:
        yield fleet
    finally:
        fleet.close()  # (it thaws a worker a failed test left stopped)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_worker_frozen_past_its_leases_neither_overruns_concurrency_nor_finishes_taken_work(
    chunk1_fleet: FaultFleet,
) -> None:
    # Given a function with reserved concurrency 2 whose runs take 2 s, and one worker
    fleet = chunk1_fleet
    done, history = fleet.recording_function("slow", timeout_s=3)
    history.scenario = "frozen_worker"
    fleet.client.set_concurrency("slow", LIMIT)
    frozen = fleet.worker(slots=2)
    fleet.router()
    results = fleet.client.invoke_many("slow", [{"n": n, "sleep": 2} for n in range(6)])
    history.accept(results, list(range(6)))
    fleet.wait_for(lambda: sum(history.runs().values()) >= 2, timeout=60, what="two runs")
    # When that worker is frozen (SIGSTOP) past its leases' TTL (timeout 3 s + 30 s margin)
    # and its broker heartbeats, while a second worker joins
    history.mark_fault()
    frozen.send_signal(signal.SIGSTOP)
    fleet.worker(slots=2)
    time.sleep(40)
    frozen.send_signal(signal.SIGCONT)
    history.mark_back()
    # Then everything completes once, the frozen worker's taken-over work unfinished by it
    wait_all_done(fleet, done, history, timeout=120)
    completions = fleet.completions(done)
    verdict = history.check(completions, in_flight=2)
    verdict.notes.append(f"max overlapping runs {history.max_overlap()} (limit {LIMIT})")
    save(verdict, results_dir())
    assert verdict.lost == 0, describe(verdict, fleet)
    assert verdict.duplicated == 0, describe(verdict, fleet)  # fenced: no second result
    assert verdict.extra_runs <= 2, describe(verdict, fleet)
    # And concurrency never exceeded the limit by more than the frozen worker's 2 leases
    assert history.max_overlap() <= LIMIT + 2, describe(verdict, fleet)
    assert frozen.poll() is None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_finish_the_broker_refuses_holds_the_chunk_instead_of_rerunning_it(
    fault_fleet: FaultFleet,
) -> None:
    # Given a failing function whose retry goes through a delay queue, and a queue of that
    # name already declared with other arguments (the broker answers PRECONDITION_FAILED
    # and closes the channel that declared it)
    fleet = fault_fleet
    dead = f"{fleet.prefix}-dead"
    _done, history = fleet.recording_function(
        "bad", handler="faultapp.fail", max_retries=1, on_failure=f"redis+stream:///{dead}"
    )
    history.scenario = "broker_refuses_finish"
    blocker = Backbone(fleet.settings.amqp, fleet.keys, name="warren-fault-blocker")
    delay_queue = fleet.keys.delay_queue(200)  # WARREN_ASYNC_RETRY_DELAYS=0.2,0.4
    blocker.declare_queue(delay_queue)
    fleet.worker(slots=2)
    fleet.router()
    # When 3 invocations fail and their retries cannot be published for 8 s
    results = fleet.client.invoke_many("bad", [{"n": n} for n in range(3)])
    history.accept(results, list(range(3)))
    fleet.wait_for(lambda: sum(history.runs().values()) >= 1, timeout=60, what="a run")
    time.sleep(8)
    during = sum(history.runs().values())
    # Then nothing ran twice meanwhile (the chunk is held, not requeued)...
    assert during <= 3, f"{during} runs while the finish was refused\n{fleet.logs()}"
    # ...and once the conflict is gone, the same worker finishes: every invocation runs
    # once more (its one retry) and is reported to on-failure exactly once
    blocker.delete_queue(delay_queue)
    blocker.close()
    fleet.wait_for(
        lambda: len(fleet.completions(dead)) >= 3, timeout=90, what="three failure records"
    )
    reported = Counter(fleet.completions(dead))
    verdict = history.check([], dead=list(reported))
    save(verdict, results_dir())
    assert verdict.lost == 0 and verdict.dead_lettered == 3, describe(verdict, fleet)
    assert all(count == 1 for count in reported.values()), describe(verdict, fleet)
    assert set(history.runs().values()) == {2}, describe(verdict, fleet)
    assert "PRECONDITION_FAILED" in fleet.logs()
