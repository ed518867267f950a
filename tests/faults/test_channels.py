"""A Backbone's channels after broker errors: reopened on use, or the connection reported closed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from broker_adapters.amqp import Backbone
from faults.nodes import RabbitNode
from warren.errors import BrokerUnavailable
from warren.keys import Keys
from warren.settings import AmqpSettings


@pytest.fixture
def backbone(healthy_rabbit: RabbitNode, unique: str) -> Iterator[Backbone]:
    bb = Backbone(AmqpSettings.from_url(healthy_rabbit.url), Keys(f"ch{unique}"))
    yield bb
    bb.close()


def test_a_declaration_the_broker_refuses_closes_nothing_the_next_one_needs(
    backbone: Backbone, unique: str
) -> None:
    # Given a delay queue declared without its TTL by someone else
    other = Backbone(backbone.amqp, backbone.keys)
    other.declare_queue(backbone.keys.delay_queue(100))
    other.close()
    backbone.declare()
    backbone.consume(backbone.keys.work_queue(), lambda _d: None, 1)
    # When this Backbone declares it with its TTL (PRECONDITION_FAILED closes that channel)
    with pytest.raises(BrokerUnavailable, match="PRECONDITION_FAILED"):
        backbone.declare_delay(100)
    # Then the consumer and the connection are untouched, and the next declaration works
    assert backbone.is_open
    backbone.process(0)
    backbone.declare_queue(f"ch{unique}-other")
    backbone.publish(f"ch{unique}-other", b"x")
    assert backbone.get(f"ch{unique}-other") is not None


def test_a_consumer_the_broker_cancels_makes_the_connection_report_closed(
    backbone: Backbone, unique: str
) -> None:
    # Given a consumer on a queue
    queue = f"ch{unique}-gone"
    backbone.declare_queue(queue)
    backbone.consume(queue, lambda _d: None, 1)
    # When the queue is deleted under it (the broker cancels the consumer)
    other = Backbone(backbone.amqp, backbone.keys)
    other.delete_queue(queue)
    other.close()
    # Then the next wait for deliveries says so instead of waiting forever
    with pytest.raises(BrokerUnavailable, match="cancelled the consumer"):
        for _ in range(50):
            backbone.process(0.1)
    assert not backbone.is_open


def test_closing_every_connection_is_noticed_by_an_idle_backbone(
    backbone: Backbone, healthy_rabbit: RabbitNode
) -> None:
    backbone.declare()
    assert backbone.alive()
    healthy_rabbit.close_all_connections()
    for _ in range(50):
        if not backbone.alive():
            break
    assert not backbone.alive() and not backbone.is_open
