"""A schedule mapping hands the handler EventBridge's scheduled event itself, once per tick."""

from __future__ import annotations

import time

import pytest
from support.mappings import Harness, wait_for

from router.batching.invoker import PythonInvoker


@pytest.fixture
def h(redis_url, amqp_url, unique):
    harness = Harness(redis_url, amqp_url, f"ws-{unique}")
    yield harness
    harness.cleanup()


def test_a_due_tick_invokes_the_handler_with_the_scheduled_event(h):
    spec = h.store.create(function="tick", source="schedule:rate(1 minute)")
    events = []
    # Anchor the rate so that a tick falls due two seconds from now.
    anchor = time.time() - 58
    runner = h.runner(spec, PythonInvoker(lambda event, context: events.append(event)),
                      options={"anchor_s": anchor})
    h.start(runner)
    wait_for(lambda: events, timeout=20, what="a tick")
    time.sleep(1.5)
    h.stop_all()
    [event] = events
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert "Records" not in event
    assert h.store.stats(spec.uuid)["succeeded"] == 1
