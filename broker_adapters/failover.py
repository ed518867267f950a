"""Which brokers a connection tries, in which order, with which timeouts.

`WARREN_AMQP_URL` may list several brokers of a cluster, comma-separated (settings keep them
as `AmqpSettings.urls`). Each connection tries them all, starting at a different one each time
so that a fleet spreads over the cluster and a dead node costs one refused attempt.
"""

from __future__ import annotations

import itertools
import random

import pika

from warren.settings import AmqpSettings

#: Seconds between heartbeats. A silent peer (a network blackhole) is noticed after about two
#: of them, on both sides; the broker then requeues what the silent connection held.
HEARTBEAT_S = 10
_turn = itertools.count(random.randrange(1 << 16))


def connection_parameters(
    amqp: AmqpSettings, name: str, heartbeat_s: int | None = None
) -> list[pika.URLParameters]:
    """pika parameters for every broker in `amqp`, rotated: pika tries them in order."""
    urls = list(amqp.urls)
    start = next(_turn) % len(urls)
    ordered = urls[start:] + urls[:start]
    return [_parameters(url, name, heartbeat_s or HEARTBEAT_S) for url in ordered]


def _parameters(url: str, name: str, heartbeat_s: int) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.heartbeat = heartbeat_s
    params.blocked_connection_timeout = 60
    params.connection_attempts = 1
    # A broker that accepts TCP but never answers (blackholed, or frozen) must not hold a
    # reconnecting process for long: each attempt gives up after these.
    params.socket_timeout = 5
    params.stack_timeout = 15
    params.client_properties = {"connection_name": name}
    return params

