"""Sync callers and event source mappings across a broker restart."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from broker_adapters.amqp import Backbone
from faults.fleet import FaultFleet, describe, results_dir
from faults.history import save
from faults.nodes import RedisNode
from warren.client import Client
from warren.errors import StoreUnavailable, Unavailable
from warren.settings import Settings
from warren.store.mappings import MappingStore

BATCH = 10
QUEUE_CONCURRENCY = 5  # a queue mapping's default concurrent batches (warren/cli/compose.py)
PREFETCH = 1000  # the poller's prefetch for such a mapping (warren/cli/compose.py)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sync_calls_go_on_through_a_broker_restart_and_amqp_lane_callers_get_clear_errors(
    fault_fleet: FaultFleet,
) -> None:
    # Given a client on the Redis sync lane (the default) and one on RabbitMQ's, both of
    # which made sync calls through a worker
    fleet = fault_fleet
    _done, _history = fleet.recording_function("rec")
    fleet.worker(slots=2)
    settings = Settings.from_environ(fleet.env)
    caller = Client.from_settings(settings)
    on_amqp = Client.from_settings(replace(settings, sync_lane="amqp"))
    try:
        assert caller.invoke("rec", {"n": 0, "sleep": 0}).status_code == 200
        assert on_amqp.invoke("rec", {"n": 1, "sleep": 0}).status_code == 200
        # When the broker stops
        fleet.node.stop_app()
        down = time.monotonic()
        # Then calls on the Redis lane are answered all the same (the worker serves the lane
        # while it has no broker connection), and one on RabbitMQ's lane fails at once
        answered = [caller.invoke("rec", {"n": 10 + n, "sleep": 0}) for n in range(5)]
        assert [a.status_code for a in answered] == [200] * 5, fleet.logs()
        assert time.monotonic() - down < 30, "the Redis lane waited for the broker"
        with pytest.raises(Unavailable, match="RabbitMQ"):
            on_amqp.invoke("rec", {"n": 2, "sleep": 0})
        fleet.node.start_app()
        back = time.monotonic()
        # And once it is back the same clients' calls go through within seconds, no restart
        while True:
            try:
                assert on_amqp.invoke("rec", {"n": 3, "sleep": 0}).status_code == 200
                break
            except Unavailable:
                assert time.monotonic() - back < 60, fleet.logs()
                time.sleep(0.2)
        recovery = time.monotonic() - back
        assert caller.invoke("rec", {"n": 4, "sleep": 0}).status_code == 200
        assert all(p.poll() is None for p in fleet.procs)
    finally:
        caller.close()
        on_amqp.close()
    from faults.history import Verdict

    save(Verdict("sync_caller_broker_restart", recovery_s=round(recovery, 2)), results_dir())


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_sync_call_fails_at_once_while_redis_is_down_and_works_once_it_is_back(
    fault_fleet: FaultFleet, healthy_redis: RedisNode,
) -> None:
    # Given a client that made a sync call on the Redis lane through a worker
    fleet = fault_fleet
    _done, _history = fleet.recording_function("rec")
    fleet.worker(slots=2)
    caller = Client.from_settings(Settings.from_environ(fleet.env))
    try:
        assert caller.invoke("rec", {"n": 0, "sleep": 0}).status_code == 200
        # When Redis (the lane, the leases, the reply lists) goes away
        healthy_redis.stop()
        try:
            # Then a call fails at once with an error that names Redis
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="Redis"):
                caller.invoke("rec", {"n": 1, "sleep": 0})
            assert time.monotonic() - started < 5
        finally:
            healthy_redis.start()
        # And once Redis is back, calls go through again without restarting anything
        back = time.monotonic()
        while True:
            try:
                assert caller.invoke("rec", {"n": 2, "sleep": 0}).status_code == 200
                break
            except (StoreUnavailable, Unavailable):
                assert time.monotonic() - back < 60, fleet.logs()
                time.sleep(0.2)
        assert all(p.poll() is None for p in fleet.procs)
    finally:
        caller.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_queue_mapping_delivers_every_message_across_a_broker_restart(
    fault_fleet: FaultFleet,
) -> None:
    # Given 300 messages in a RabbitMQ queue mapped to a function, and a poller
    fleet = fault_fleet
    _done, history = fleet.recording_function("batch", handler="faultapp.batch")
    history.scenario = "queue_mapping_broker_restart"
    source = f"{fleet.prefix}-src"
    publisher = Backbone(fleet.settings.amqp, fleet.keys, name="warren-fault-source")
    publisher.declare_queue(source)
    import orjson

    publisher.publish_many(source, [orjson.dumps({"n": n}) for n in range(300)])
    publisher.close()
    history.accepted = {f"msg-{n}": n for n in range(300)}
    fleet.worker(slots=2)
    fleet.router()
    fleet.spawn("poller")
    store = MappingStore(fleet.client.redis, fleet.prefix, functions=fleet.client.registry)
    url = fleet.node.url.replace("/%2F", f"/%2F/{source}")
    store.create(function="batch", source=url, batch_size=BATCH)
    fleet.wait_for(lambda: len(history.runs()) >= 50, timeout=90, what="50 messages")
    # When the broker restarts mid-way
    history.mark_fault()
    fleet.node.stop_app()
    time.sleep(3)
    ran_before = set(history.runs())  # all that was taken before the broker went away
    fleet.node.start_app()
    history.mark_back()
    # Then every message reaches the handler, and a handler runs again only for a real
    # redelivery: a message that ran before the fault but whose ack had not reached the broker
    # (the batches in progress), once. Messages read but not yet invoked (the rest of the
    # prefetch window) are dropped with their connection, not invoked, and come again.
    assert len(ran_before) < 300, "the fault must land mid-way"
    deadline = time.monotonic() + 120
    while len(history.runs()) < 300 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # a stray late run of a stale batch would show up here
    history.mark_flowing()
    runs = history.runs()
    # In flight at the fault: every message delivered to the poller and not acked (the
    # prefetch window, here all that had not run) plus the batches in progress.
    in_progress = BATCH * QUEUE_CONCURRENCY
    in_flight = min(PREFETCH, 300 - len(ran_before)) + in_progress
    verdict = history.check(list(runs), in_flight=in_flight)
    rerun = {m for m, count in runs.items() if count > 1}
    verdict.notes.append(
        f"{len(ran_before)} messages had run at the fault; re-run only messages that had run "
        f"before it ({len(rerun)}), once each"
    )
    save(verdict, results_dir())
    assert verdict.lost == 0, describe(verdict, fleet)
    assert verdict.max_runs <= 2, describe(verdict, fleet) + f"\nruns: {sorted(rerun)}"
    assert rerun <= ran_before, describe(verdict, fleet) + f"\nruns: {sorted(rerun - ran_before)}"
    assert verdict.extra_runs <= min(verdict.in_flight, in_progress), describe(verdict, fleet)
