"""The Redis sync lane under faults: Redis restarting under a stream of sync calls, and a worker
frozen while it holds a request (docs/fleet.md, the Redis sync lane)."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import orjson
import pytest

from faults.fleet import FaultFleet, describe, results_dir
from faults.history import save
from faults.nodes import RedisNode
from warren.client import Client
from warren.errors import StoreUnavailable
from warren.settings import Settings
from warren.store.mappings import MappingStore


def lane_is_empty(fleet: FaultFleet) -> bool:
    taken = fleet.redis.scan_iter(fleet.keys.sync_taken("default", "*"))
    return fleet.redis.llen(fleet.keys.sync_lane()) == 0 and not any(
        fleet.redis.llen(key) for key in taken
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sync_calls_across_a_redis_restart_fail_clearly_then_resume_with_nothing_stuck(
    fault_fleet: FaultFleet, healthy_redis: RedisNode
) -> None:
    # Given a caller making sync calls one after another through a worker's two slots
    fleet = fault_fleet
    _done, _history = fleet.recording_function("rec")
    worker = fleet.worker(slots=2)
    caller = Client.from_settings(Settings.from_environ(fleet.env))
    outcomes: list[tuple[float, str]] = []
    stop = threading.Event()

    def calls() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                result = caller.invoke("rec", {"n": n, "sleep": 0})
                ok = result.status_code == 200 and result.payload == {"n": n}
                outcomes.append((time.monotonic(), "ok" if ok else f"wrong: {result}"))
            except StoreUnavailable as exc:
                outcomes.append((time.monotonic(), f"unavailable: {exc}"))
                time.sleep(0.1)

    runner = threading.Thread(target=calls)
    runner.start()
    try:
        fleet.wait_for(lambda: len(outcomes) >= 50, what="calls going")
        # When Redis restarts (down 3 s; the lists survive in its append-only file)
        down = time.monotonic()
        healthy_redis.restart(down_s=3)
        back = time.monotonic()
        # Then calls meanwhile fail with a clear error naming Redis, none hangs, and calls
        # answer again within seconds of Redis being back, each with its own result
        fleet.wait_for(lambda: any(t > back and o == "ok" for t, o in outcomes),
                       timeout=60, what="calls answering again")
        stop.set()
        runner.join(timeout=60)
        assert not runner.is_alive(), "a call hung"
    finally:
        stop.set()
        caller.close()
    odd = [o for _, o in outcomes if o != "ok" and not o.startswith("unavailable")]
    assert odd == [], odd
    failed = [o for t, o in outcomes if o.startswith("unavailable")]
    assert all("Redis" in o for o in failed), failed[:3]
    assert all(t <= back + 15 for t, o in outcomes if o.startswith("unavailable")), "slow to resume"
    recovered = min(t for t, o in outcomes if t > back and o == "ok") - back
    assert recovered < 15, recovered
    # And the worker lived through it, with nothing left on the lane or in its taken lists
    assert worker.poll() is None
    fleet.wait_for(lambda: lane_is_empty(fleet), timeout=10, what="an empty lane")
    assert time.monotonic() - down < 120


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_frozen_workers_sync_request_runs_on_another_and_the_frozen_one_finishes_nothing(
    fault_fleet: FaultFleet,
) -> None:
    # Given a sync call running on the only worker
    fleet = fault_fleet
    _done, history = fleet.recording_function("rec", timeout_s=20)
    frozen = fleet.worker(slots=1)
    got: dict[str, Any] = {}
    caller = threading.Thread(
        target=lambda: got.update(result=fleet.client.invoke("rec", {"n": 1, "sleep": 3}))
    )
    caller.start()
    fleet.wait_for(lambda: sum(history.runs().values()) >= 1, what="the run to start")
    # When that worker is frozen (SIGSTOP) past its heartbeat, while a second worker runs
    frozen.send_signal(signal.SIGSTOP)
    frozen_at = time.time()
    fleet.worker(slots=1)
    caller.join(timeout=60)
    # Then the live worker put the request back on the lane and ran it; the caller got that
    # run's result
    result = got["result"]
    assert result.status_code == 200 and result.payload == {"n": 1}, result
    runs = history.runs()
    assert runs[result.request_id] == 2, runs  # the frozen one's, and the rerun
    assert time.time() - frozen_at < 30
    # And once the frozen worker thaws, its run's finish is fenced out: no second reply, and
    # nothing of the request stays taken
    frozen.send_signal(signal.SIGCONT)
    fleet.wait_for(lambda: "another delivery of it took over" in fleet.logs(), timeout=30,
                   what="the frozen worker to drop its result")
    fleet.wait_for(lambda: lane_is_empty(fleet), timeout=10, what="an empty lane")
    assert not fleet.redis.exists(fleet.keys.reply(result.request_id))
    assert frozen.poll() is None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_stream_mapping_runs_every_record_across_a_redis_restart(
    fault_fleet: FaultFleet, healthy_redis: RedisNode
) -> None:
    # Given 300 entries of a stream in the fleet's Redis, mapped to a function in batches of
    # 10: the poller begins each batch's call on its own thread (router/batching/inline.py)
    fleet = fault_fleet
    _done, history = fleet.recording_function("batch", handler="faultapp.batch")
    history.scenario = "stream_mapping_redis_restart"
    stream = f"{fleet.prefix}-src"
    for n in range(300):
        fleet.redis.xadd(stream, {"data": orjson.dumps({"n": n})})
    history.accepted = {f"msg-{n}": n for n in range(300)}
    fleet.worker(slots=2)
    fleet.router()
    fleet.spawn("poller")
    store = MappingStore(fleet.client.redis, fleet.prefix, functions=fleet.client.registry)
    store.create(function="batch", source=f"redis+stream:///{stream}", batch_size=10,
                 start_position="trim-horizon")
    fleet.wait_for(lambda: len(history.runs()) >= 50, timeout=90, what="50 records")
    # When Redis restarts mid-way (down 3 s; the stream and its group survive in its
    # append-only file)
    history.mark_fault()
    ran_before = set(history.runs())
    healthy_redis.restart(down_s=3)
    history.mark_back()
    # Then every record reaches the handler; only the batch in flight at the fault may run
    # again (its reply or its checkpoint was lost with Redis), once
    assert len(ran_before) < 300, "the fault must land mid-way"
    deadline = time.monotonic() + 120
    while len(history.runs()) < 300 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # a stray late run would show up here
    history.mark_flowing()
    runs = history.runs()
    verdict = history.check(list(runs), in_flight=20)
    save(verdict, results_dir())
    assert verdict.lost == 0, describe(verdict, fleet)
    assert verdict.max_runs <= 2, describe(verdict, fleet)
    assert verdict.extra_runs <= 20, describe(verdict, fleet)
    assert all(p.poll() is None for p in fleet.procs), fleet.logs()
