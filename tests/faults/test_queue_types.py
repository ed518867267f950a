"""Quorum queues by default, classic on request, and queues an older fleet left behind."""

from __future__ import annotations

import logging
import time

import pytest

from broker_adapters.amqp import Backbone
from faults.nodes import RabbitNode
from warren.keys import Keys
from warren.settings import AmqpSettings


def _types(node: RabbitNode, prefix: str) -> dict[str, str]:
    return {row[0]: row[1] for row in node.queues("type") if row[0].startswith(prefix)}


def test_the_fleets_queues_are_quorum_queues_by_default(
    healthy_rabbit: RabbitNode, unique: str
) -> None:
    prefix = f"q{unique}"
    backbone = Backbone(AmqpSettings.from_url(healthy_rabbit.url), Keys(prefix))
    try:
        backbone.declare()
        backbone.declare_delay(100)
    finally:
        backbone.close()
    types = _types(healthy_rabbit, prefix)
    # The sync lane alone is classic (transient requests that expire in seconds: docs/fleet.md).
    assert types.pop(Keys(prefix).sync_queue()) == "classic"
    assert types and set(types.values()) == {"quorum"}, types


def test_a_classic_setting_declares_classic_queues(healthy_rabbit: RabbitNode, unique: str) -> None:
    prefix = f"q{unique}"
    amqp = AmqpSettings.from_url(healthy_rabbit.url, queue_type="classic")
    backbone = Backbone(amqp, Keys(prefix))
    try:
        backbone.declare()
    finally:
        backbone.close()
    assert set(_types(healthy_rabbit, prefix).values()) == {"classic"}


def test_a_quorum_delay_queue_hands_its_messages_on_after_its_ttl(
    healthy_rabbit: RabbitNode, unique: str
) -> None:
    keys = Keys(f"q{unique}")
    backbone = Backbone(AmqpSettings.from_url(healthy_rabbit.url), keys)
    try:
        backbone.declare()
        backbone.publish(backbone.declare_delay(200), b"later")
        deadline = time.monotonic() + 30
        while (got := backbone.get(keys.async_queue)) is None:
            assert time.monotonic() < deadline, "the delayed message never arrived"
            time.sleep(0.05)
        assert got.body == b"later"
    finally:
        backbone.close()


def test_a_classic_queue_of_an_older_fleet_is_used_and_reported_with_the_migrating_command(
    healthy_rabbit: RabbitNode, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the work queue an older fleet declared as a classic queue, holding a message
    keys = Keys(f"q{unique}")
    old = Backbone(AmqpSettings.from_url(healthy_rabbit.url, queue_type="classic"), keys)
    old.declare()
    old.publish(keys.work_queue("default"), b"old work")
    old.close()
    # When a quorum-configured process declares the fleet's queues
    caplog.set_level(logging.WARNING, logger="warren.amqp")
    new = Backbone(AmqpSettings.from_url(healthy_rabbit.url), keys)
    try:
        new.declare()
        # Then it uses the queue as it is (its message is there) and says how to migrate it
        got = new.get(keys.work_queue("default"))
        assert got is not None and got.body == b"old work"
        assert new.is_open
    finally:
        new.close()
    assert "warren queues migrate" in caplog.text and "classic" in caplog.text


def test_queues_migrate_turns_an_older_fleets_classic_queues_into_quorum_keeping_messages(
    healthy_rabbit: RabbitNode, unique: str
) -> None:
    from click.testing import CliRunner

    from warren.cli import cli

    # Given an older fleet's classic queues, its work queue holding two messages
    prefix = f"q{unique}"
    keys = Keys(prefix)
    old = Backbone(AmqpSettings.from_url(healthy_rabbit.url, queue_type="classic"), keys)
    old.declare()
    old.publish(keys.work_queue("default"), b"one")
    old.publish(keys.work_queue("default"), b"two")
    old.close()
    # When the operator runs the migrating command (fleet stopped)
    env = {"WARREN_AMQP_URL": healthy_rabbit.url, "WARREN_PREFIX": prefix,
           "WARREN_ASYNC_RETRY_DELAYS": "1", "WARREN_THROTTLE_DELAY_MS": "100000"}
    result = CliRunner().invoke(cli, ["queues", "migrate"], env=env)
    assert result.exit_code == 0, result.output
    assert f"{keys.work_queue('default')}: migrated (2 messages)" in result.output
    # Then the queues are quorum queues and the messages are still there, in order
    types = _types(healthy_rabbit, prefix)
    assert types[keys.work_queue("default")] == "quorum", types
    new = Backbone(AmqpSettings.from_url(healthy_rabbit.url), keys)
    try:
        bodies = [new.get(keys.work_queue("default")) for _ in range(2)]
        assert [b.body for b in bodies if b] == [b"one", b"two"]
    finally:
        new.close()
    # And running it again changes nothing
    again = CliRunner().invoke(cli, ["queues", "migrate"], env=env)
    assert "migrated" not in again.output and "already quorum" in again.output
