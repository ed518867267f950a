"""Sync callers and event source mappings across a broker restart."""

from __future__ import annotations

import time

import pytest

from broker_adapters.amqp import Backbone
from faults.fleet import FaultFleet, describe, results_dir
from faults.history import save
from warren.client import Client
from warren.errors import Unavailable
from warren.settings import Settings
from warren.store.mappings import MappingStore

BATCH = 10
QUEUE_CONCURRENCY = 5  # a queue mapping's default concurrent batches (warren/cli/compose.py)
PREFETCH = 1000  # the poller's prefetch for such a mapping (warren/cli/compose.py)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_sync_caller_gets_clear_errors_during_a_broker_restart_then_recovers(
    fault_fleet: FaultFleet,
) -> None:
    # Given a client that made sync calls through a worker
    fleet = fault_fleet
    _done, _history = fleet.recording_function("rec")
    fleet.worker(slots=2)
    caller = Client.from_settings(Settings.from_environ(fleet.env))
    try:
        assert caller.invoke("rec", {"n": 0, "sleep": 0}).status_code == 200
        # When the broker restarts
        fleet.node.stop_app()
        with pytest.raises(Unavailable, match="RabbitMQ"):
            caller.invoke("rec", {"n": 1, "sleep": 0})
        fleet.node.start_app()
        back = time.monotonic()
        # Then the same client's calls go through again within seconds, no restart needed
        while True:
            try:
                assert caller.invoke("rec", {"n": 2, "sleep": 0}).status_code == 200
                break
            except Unavailable:
                assert time.monotonic() - back < 60, fleet.logs()
                time.sleep(0.2)
        recovery = time.monotonic() - back
        assert all(p.poll() is None for p in fleet.procs)
    finally:
        caller.close()
    from faults.history import Verdict

    save(Verdict("sync_caller_broker_restart", recovery_s=round(recovery, 2)), results_dir())


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
