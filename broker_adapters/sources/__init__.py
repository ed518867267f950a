"""Event sources behind one seam: Redis streams, RabbitMQ queues, S3-compatible buckets, schedules,
PostgreSQL table changes and MQTT topics.

`open_source(uri, ...)` parses a mapping's source URI and returns the matching `Source`;
`prepare_source` checks a new mapping's source and starts keeping its records; `purge_source`
forgets a deleted mapping's checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from warren.errors import InvalidParameter
from warren.keys import Keys
from warren.mapping import SOURCE_HINT, StartPosition, source_kind
from warren.source import Source, SourceIdentity
from warren.store.redis import redis_errors

__all__ = ["open_source", "prepare_source", "purge_source"]

def open_source(
    uri: str,
    *,
    mapping_id: str,
    start_position: str = "trim-horizon",
    redis: redis.Redis[Any],
    prefix: str,
    options: Mapping[str, Any] | None = None,
) -> Source:
    """Open the source a mapping reads from.

    `redis` is Warren's own store (checkpoints live under `{prefix}:mapping:{mapping_id}:`).
    `options`: `consumer` (a name stable per poller process), `region`, `account` (for ARNs);
    per kind: stream `claim_idle_s`; queue `prefetch`, `batch_size`, `heartbeat_s`, `fastpath`
    (False: no pika internals, AmqpSettings.fastpath);
    s3 `poll_interval_s`, `sweep_pages`, `page_size`; schedule `anchor_s`, `rule_name`, `max_age_s`.
    A bad URI raises InvalidParameter saying what a good one looks like.
    """
    opts: Mapping[str, Any] = options or {}
    kind = source_kind(uri)
    identity = SourceIdentity.from_options(mapping_id, prefix, opts)
    start = StartPosition.parse(start_position)
    if kind == "stream":
        from broker_adapters.sources.stream import StreamLocation, StreamSource

        location = StreamLocation.parse(uri)
        return StreamSource(
            location.client(redis),
            location,
            identity,
            start,
            claim_idle_s=float(opts.get("claim_idle_s", 30.0)),
        )
    if kind == "queue":
        from broker_adapters.sources.queue import QueueSource
        from broker_adapters.sources.queue_location import QueueLocation

        batch = int(opts.get("batch_size", 0))
        return QueueSource(
            QueueLocation.parse(uri),
            identity,
            prefetch=max(int(opts.get("prefetch", 1000)), 2 * batch),
            heartbeat_s=int(opts.get("heartbeat_s", 30)),
            fastpath=bool(opts.get("fastpath", True)),
        )
    if kind == "s3":
        from broker_adapters.sources.bucket import BucketLocation, BucketSource

        bucket = BucketLocation.parse(uri)
        return BucketSource(
            bucket.client(identity.region),
            redis,
            bucket,
            identity,
            start,
            poll_interval_s=float(opts.get("poll_interval_s", 1.0)),
            sweep_pages=int(opts.get("sweep_pages", 1)),
            page_size=int(opts.get("page_size", 1000)),
        )
    if kind == "schedule":
        from broker_adapters.sources.rate import parse_schedule
        from broker_adapters.sources.schedule import ScheduleSource

        expression = parse_schedule(uri.partition(":")[2], float(opts.get("anchor_s", 0.0)))
        return ScheduleSource(
            redis,
            expression,
            identity,
            rule_name=opts.get("rule_name"),
            max_age_s=float(opts.get("max_age_s", 86400.0)),
        )
    if kind == "table":
        from broker_adapters.sources.pgslot import TableLocation
        from broker_adapters.sources.pgtable import TableSource

        table = TableLocation.parse(uri)
        return TableSource(
            table, identity,
            poll_interval_s=float(opts.get("poll_interval_s", table.poll_ms / 1000)),
        )
    if kind == "mqtt":
        from broker_adapters.sources.mqtt import MqttSource
        from broker_adapters.sources.mqtt_session import MqttLocation

        return MqttSource(MqttLocation.parse(uri), identity,
                          batch_size=int(opts.get("batch_size", 1)))
    raise InvalidParameter(f"source kind {kind!r} is not available yet: {SOURCE_HINT}")


def prepare_source(uri: str, *, mapping_id: str) -> None:
    """Check a new mapping's source and make it start keeping records for the mapping: a
    PostgreSQL table gets its replication slot, an MQTT topic filter its persistent session.
    A source that cannot work raises InvalidParameter with the fix; others are only parsed."""
    kind = source_kind(uri)
    if kind == "table":
        from broker_adapters.sources.pgslot import prepare_table

        prepare_table(uri, mapping_id)
    elif kind == "mqtt":
        from broker_adapters.sources.mqtt_session import prepare_session

        prepare_session(uri, mapping_id)


def purge_source(
    uri: str, *, mapping_id: str, redis: redis.Redis[Any], prefix: str
) -> None:
    """Forget a deleted mapping's checkpoints: its stream consumer group, its bucket and
    schedule state in Redis, its PostgreSQL slot, its MQTT session. The source's own data
    (stream entries, messages, objects, rows) stays.
    """
    kind = source_kind(uri)
    base = Keys(prefix).mapping(mapping_id)
    if kind == "table":
        from broker_adapters.sources.pgslot import drop_slot

        drop_slot(uri, mapping_id)
    elif kind == "mqtt":
        from broker_adapters.sources.mqtt_session import end_session

        end_session(uri, mapping_id)
    if kind == "stream":
        from broker_adapters.sources.stream import StreamLocation

        location = StreamLocation.parse(uri)
        client = location.client(redis)
        try:
            with redis_errors(f"stream {location.stream!r}"):
                client.xgroup_destroy(location.stream, f"warren-{mapping_id}")  # type: ignore[no-untyped-call]
        finally:
            client.close()
    with redis_errors("source checkpoints"):
        for pattern in (f"{base}:s3:*", f"{base}:schedule*", f"{base}:tick:*"):
            keys = list(redis.scan_iter(match=pattern, count=1000))
            if keys:
                redis.delete(*keys)
