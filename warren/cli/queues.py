"""`warren queues migrate`: the fleet's queues to the configured type (quorum by default)."""

from __future__ import annotations

import os
from typing import Any

import click

from broker_adapters.migration import migrate
from warren.cli.compose import retry_policy
from warren.cli.root import Root
from warren.keys import DEFAULT_POOL, Keys


@click.group("queues")
def queues_group() -> None:
    """The fleet's RabbitMQ queues."""


@queues_group.command("migrate")
@click.option("--pool", "pools", multiple=True, default=[DEFAULT_POOL], show_default=True,
              help="Work queue pools to migrate (repeat for several).")
@click.option("--delay-ms", "delays", multiple=True, type=int,
              help="Delay queues to migrate besides those of the retry and throttle settings.")
@click.pass_obj
def migrate_command(obj: Root, pools: tuple[str, ...], delays: tuple[int, ...]) -> None:
    """Move every queue of this prefix to WARREN_QUEUE_TYPE (quorum unless set to classic).

    Stop the fleet's processes first: a queue with consumers is refused. Messages are kept.
    """
    settings = obj.settings
    keys = Keys(settings.prefix)
    policy = retry_policy(os.environ)
    names: list[str] = []
    for pool in pools:
        names += [q for q in keys.all_queues(pool) if q not in names]
    delay_ms = {*delays, *(int(d * 1000) for d in policy.delays_s), *policy.throttle_delays_ms()}
    wanted: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in names]
    for ms in sorted(delay_ms):
        wanted.append((keys.delay_queue(ms), {
            "x-message-ttl": ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": keys.async_queue,
        }))
    for result in migrate(settings.amqp, wanted):
        extra = f" ({result.messages} messages)" if result.outcome == "migrated" else ""
        click.echo(f"{result.queue}: {result.outcome}{extra}")


COMMANDS = [queues_group]
