"""The fleet's semantics through real router and worker processes on real RabbitMQ and Redis."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from support.fleet import Fleet, make_fleet

pytestmark = pytest.mark.slow


def max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = running = 0
    for _t, delta in events:
        running += delta
        best = max(best, running)
    return best


def test_reserved_concurrency_caps_overlap_exactly_and_all_complete(fleet: Fleet) -> None:
    # Given a function reserved at 3 and a worker with more slots than that
    done = f"{fleet.prefix}-done"
    fleet.function("span3", handler="app.span", concurrency=3, on_success=f"redis+stream:///{done}")
    fleet.worker(slots=5)
    fleet.router()
    # When 60 async invocations of a 200 ms handler arrive at once
    fleet.client.invoke_many("span3", [{"sleep": 0.2, "n": n} for n in range(60)])
    fleet.wait_for(lambda: fleet.redis.xlen(done) >= 60, timeout=90, what="60 completions")
    # Then all 60 completed once each, and never more than 3 ran at the same time
    records = fleet.stream_records(done)
    assert sorted(r["responsePayload"]["n"] for r in records) == list(range(60))
    spans = [(r["responsePayload"]["start"], r["responsePayload"]["end"]) for r in records]
    assert max_overlap(spans) == 3


def test_killed_worker_invocations_complete_elsewhere(fleet: Fleet) -> None:
    done = f"{fleet.prefix}-done"
    fleet.function("slow", handler="app.span", timeout_s=5, on_success=f"redis+stream:///{done}")
    a = fleet.worker(slots=2)
    b = fleet.worker(slots=2)
    fleet.router()
    ids = {
        fleet.client.invoke("slow", {"sleep": 1, "n": n}, invocation_type="Event").request_id
        for n in range(20)
    }
    # When one worker is killed -9 while it runs invocations
    fleet.wait_for(lambda: fleet.redis.xlen(done) >= 2, timeout=30, what="first completions")
    victims: list[int] = []

    def a_busy_worker() -> bool:
        # Heartbeats come every 2 s: wait for one that shows a worker mid-run.
        busy = {int(w["pid"]): int(w["busy"]) for w in fleet.worker_status()}
        victims[:] = [pid for pid in (a.pid, b.pid) if busy.get(pid, 0) > 0]
        return bool(victims)

    fleet.wait_for(a_busy_worker, timeout=30, what="a worker reporting busy slots")
    victim = a if a.pid in victims else b
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    # Then every one of the 20 still completes (on the other worker)
    fleet.wait_for(
        lambda: {r["requestContext"]["requestId"] for r in fleet.stream_records(done)} >= ids,
        timeout=90,
        what="all 20 completions",
    )


def test_async_failure_is_retried_twice_then_recorded_once(fleet: Fleet) -> None:
    failed = f"{fleet.prefix}-failed"
    fleet.function(
        "boom", handler="app.fail", max_retries=2, on_failure=f"redis+stream:///{failed}"
    )
    fleet.worker(slots=2)
    fleet.router()
    rid = fleet.client.invoke("boom", {"x": 1}, invocation_type="Event").request_id
    fleet.wait_for(lambda: fleet.redis.xlen(failed) >= 1, timeout=60, what="the failure record")
    time.sleep(1.5)  # would a fourth attempt or a second record follow?
    records = fleet.stream_records(failed)
    assert len(records) == 1
    record = records[0]
    assert record["requestContext"]["requestId"] == rid
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"] == {"x": 1}
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorType"] == "ValueError"
    assert record["version"] == "1.0" and record["timestamp"].endswith("Z")
    attempts = [e for e in fleet.client_logs("boom") if e.request_id == rid]
    assert len(attempts) == 3


def test_success_goes_to_on_success_queue_destination(fleet: Fleet) -> None:
    queue = f"{fleet.prefix}-ok"
    fleet.function("okq", handler="app.echo", on_success=f"amqp:///{queue}")
    fleet.worker(slots=1)
    fleet.router()
    rid = fleet.client.invoke("okq", {"k": "v"}, invocation_type="Event").request_id
    fleet.wait_for(lambda: fleet.queue_depth(queue), timeout=30, what="the success record")
    record = fleet.take_json(queue)
    assert record["requestContext"]["requestId"] == rid
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["responsePayload"]["event"] == {"k": "v"}


def test_reserved_concurrency_zero_sends_async_straight_to_failure(fleet: Fleet) -> None:
    failed = f"{fleet.prefix}-failed"
    fleet.function("off", concurrency=0, on_failure=f"redis+stream:///{failed}")
    fleet.worker(slots=1)
    fleet.router()
    rid = fleet.client.invoke("off", {}, invocation_type="Event").request_id
    fleet.wait_for(lambda: fleet.redis.xlen(failed) >= 1, timeout=30, what="the failure record")
    (record,) = fleet.stream_records(failed)
    assert record["requestContext"]["requestId"] == rid
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert fleet.client_logs("off") == []  # it never ran


def test_weighted_alias_splits_within_four_points(fleet: Fleet) -> None:
    fleet.function("weighted", handler="app.echo")
    fleet.client.publish_version("weighted")
    fleet.client.update_function("weighted", env={"FLAVOUR": "two"})
    fleet.client.publish_version("weighted")
    fleet.client.create_alias("weighted", "live", "1", weights={"2": 0.1})
    fleet.worker(slots=2)
    versions = [
        fleet.client.invoke("weighted", {}, qualifier="live").executed_version for _ in range(1000)
    ]
    share = versions.count("2") / 1000
    assert set(versions) == {"1", "2"}
    assert 0.06 <= share <= 0.14, share


def test_sigterm_drains_running_work_and_leaves_the_rest_queued(
    amqp_url: str, redis_url: str, unique: str, tmp_path: Path
) -> None:
    # One invocation per message, so that "taken" and "queued" are visible in the queue.
    fleet = make_fleet(amqp_url, redis_url, unique, tmp_path, WARREN_ROUTER_CHUNK="1")
    try:
        _sigterm_drains(fleet)
    finally:
        fleet.close()


def _sigterm_drains(fleet: Fleet) -> None:
    done = f"{fleet.prefix}-done"
    fleet.function("drain", handler="app.span", timeout_s=10, on_success=f"redis+stream:///{done}")
    worker = fleet.worker(slots=2)
    fleet.router()
    for n in range(3):
        fleet.client.invoke("drain", {"sleep": 1.5, "n": n}, invocation_type="Event")
    # When SIGTERM arrives while two invocations run and a third waits in the queue
    fleet.wait_for(
        lambda: fleet.queue_depth(fleet.keys.work_queue()) == 1,
        timeout=30,
        what="two running, one queued",
    )
    time.sleep(0.3)
    worker.send_signal(signal.SIGTERM)
    # Then the worker finishes both, acks them and exits 0; the third stays queued
    assert worker.wait(timeout=30) == 0
    assert fleet.redis.xlen(done) == 2
    assert fleet.queue_depth(fleet.keys.work_queue()) == 1
    fleet.worker(slots=1)
    fleet.wait_for(lambda: fleet.redis.xlen(done) == 3, timeout=30, what="the third run")


def test_malformed_message_is_dead_lettered_and_worker_keeps_running(fleet: Fleet) -> None:
    fleet.function("alive", handler="app.echo")
    fleet.worker(slots=1)
    fleet.publish_raw(fleet.keys.work_queue(), b"\x00 definitely not msgpack")
    fleet.wait_for(
        lambda: fleet.queue_depth(fleet.keys.dead_queue), timeout=30, what="the dead letter"
    )
    dead = fleet.take(fleet.keys.dead_queue)
    assert dead.body == b"\x00 definitely not msgpack"
    assert "msgpack" in str(dead.headers["x-warren-reason"]) or "envelope" in str(
        dead.headers["x-warren-reason"]
    )
    assert dead.headers["x-warren-queue"] == fleet.keys.work_queue()
    assert fleet.client.invoke("alive", {"still": True}).payload["event"] == {"still": True}


def test_malformed_message_on_async_queue_is_dead_lettered_by_router(fleet: Fleet) -> None:
    fleet.function("alive2", handler="app.echo", on_success=f"redis+stream:///{fleet.prefix}-ok")
    fleet.worker(slots=1)
    fleet.router()
    fleet.publish_raw(fleet.keys.async_queue, b"garbage")
    fleet.wait_for(
        lambda: fleet.queue_depth(fleet.keys.dead_queue), timeout=30, what="the dead letter"
    )
    assert fleet.take(fleet.keys.dead_queue).body == b"garbage"
    fleet.client.invoke("alive2", {}, invocation_type="Event")
    fleet.wait_for(
        lambda: fleet.redis.xlen(f"{fleet.prefix}-ok") == 1,
        timeout=30,
        what="the router still routing",
    )
