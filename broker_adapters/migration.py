"""Moving a queue an older fleet declared (a classic queue) to the configured queue type.

RabbitMQ cannot change a queue's type in place. With the fleet stopped (no consumers), each
queue's messages move to a temporary queue of the new type, the old queue is deleted and
declared again with the new arguments, and the messages move back: every move publishes with
confirms before it acks, so a crash midway leaves each message in one queue or both, never
in none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from broker_adapters.amqp_errors import broker_errors
from broker_adapters.failover import connection_parameters
from broker_adapters.queues import queue_arguments
from warren.errors import Conflict
from warren.settings import AmqpSettings


@dataclass(frozen=True)
class Migrated:
    queue: str
    outcome: str  # "migrated", "already <type>", "absent"
    messages: int = 0


def migrate(amqp: AmqpSettings, queues: Iterable[tuple[str, dict[str, Any]]]) -> list[Migrated]:
    """Give each `(queue, extra arguments)` the type `amqp.queue_type`; returns what was done."""
    done: list[Migrated] = []
    with broker_errors(amqp.url):
        conn = pika.BlockingConnection(connection_parameters(amqp, "warren-queues-migrate"))
        try:
            for queue, extra in queues:
                done.append(_migrate_one(conn, queue, queue_arguments(amqp.queue_type, extra)))
        finally:
            conn.close()
    return done


def _migrate_one(conn: Any, queue: str, args: dict[str, Any]) -> Migrated:
    wanted = args.get("x-queue-type", "classic")
    channel = conn.channel()
    try:
        frame = channel.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker:
        return Migrated(queue, "absent")
    if frame.method.consumer_count:
        raise Conflict(f"queue {queue} has {frame.method.consumer_count} consumer(s): "
                       "stop the fleet's processes before migrating its queues")
    try:
        channel.queue_declare(queue, durable=True, arguments=args)
        return Migrated(queue, f"already {wanted}")
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 406:
            raise
    temporary = f"{queue}.migrating"
    channel = conn.channel()
    channel.queue_declare(temporary, durable=True, arguments=args)
    moved = _move(conn, queue, temporary)
    channel.queue_delete(queue)
    channel.queue_declare(queue, durable=True, arguments=args)
    _move(conn, temporary, queue)
    channel.queue_delete(temporary)
    channel.close()
    return Migrated(queue, "migrated", moved)


def _move(conn: Any, source: str, target: str) -> int:
    """Every message of `source` to `target`: published with confirms, then acked."""
    channel = conn.channel()
    channel.confirm_delivery()
    moved = 0
    while True:
        method, props, body = channel.basic_get(source, auto_ack=False)
        if method is None:
            break
        channel.basic_publish("", target, body, props, mandatory=True)
        channel.basic_ack(method.delivery_tag)
        moved += 1
    channel.close()
    return moved
