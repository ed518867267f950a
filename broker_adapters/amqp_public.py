"""The public-API way of the fast paths that have one: what runs when a path is off.

amqp_fastpath.py decides which path a connection gets; these go through pika's public API only,
with the same results (and the same errors) as the paths they stand in for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic


class Confirms(Protocol):
    """Confirmed publishing: returns once RabbitMQ confirmed every body; raises on nack/return."""

    def publish(self, queue: str, bodies: Sequence[bytes], props: pika.BasicProperties) -> None:
        ...

    @property
    def is_open(self) -> bool:
        """False once the broker closed its channel (it is then opened anew: amqp.py)."""
        ...


class BlockingConfirms:
    """The public-API way: BlockingChannel in confirm mode, one round trip per message."""

    def __init__(self, channel: BlockingChannel) -> None:
        self._channel = channel
        channel.confirm_delivery()

    @property
    def is_open(self) -> bool:
        return bool(self._channel.is_open)

    def publish(self, queue: str, bodies: Sequence[bytes], props: pika.BasicProperties) -> None:
        for body in bodies:
            # Raises UnroutableError (returned) or NackError (refused), as the pipeline raises.
            self._channel.basic_publish("", queue, body, props, mandatory=True)


def settle_method(ack: bool, tag: int, many: bool) -> Any:
    if ack:
        return Basic.Ack(delivery_tag=tag, multiple=many)
    return Basic.Nack(delivery_tag=tag, multiple=many, requeue=True)


def settle_blocking(channel: BlockingChannel, ack: bool, tag: int, many: bool) -> None:
    if ack:
        channel.basic_ack(tag, multiple=many)
    else:
        channel.basic_nack(tag, multiple=many, requeue=True)
