"""The Source seam's promises, written once and run against all six sources on real services."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import boto3
import pika
import pytest
import redis
from botocore.config import Config

from broker_adapters.sources import open_source
from warren.source import Source, SourceRecord


@dataclass
class Kit:
    """How to open one kind of source and how to make `n` new records appear in it."""

    open: Callable[[], Source]
    produce: Callable[[int], None]


def _drain(source: Source, wait_s: float = 1.0) -> list[SourceRecord]:
    out: list[SourceRecord] = []
    while batch := source.read(1, wait_s):
        out += batch
    return out


@pytest.fixture(params=["stream", "queue", "s3", "schedule", "table", "mqtt"])
def kit(request, redis_url, unique) -> Iterator[Kit]:
    store = redis.Redis.from_url(redis_url)
    prefix = f"t-{unique}"
    mapping = f"m-{unique}"
    # Schedule ticks fall on anchor + k minutes: anchored 30 s back, the next one is 30 s away,
    # so a test never meets an unasked tick (a minute boundary used to flake the empty read).
    anchor = float(int(time.time()) - 30)
    options = {"consumer": "c1", "poll_interval_s": 0.2, "anchor_s": anchor}
    cleanup: list[Callable[[], None]] = []

    def opener(uri: str) -> Callable[[], Source]:
        return lambda: open_source(uri, mapping_id=mapping, redis=store, prefix=prefix,
                                   options=options)

    if request.param == "stream":
        name = f"contract-{unique}"
        cleanup.append(lambda: store.delete(name))
        yield Kit(opener(f"redis+stream:///{name}"),
                  lambda n: [store.xadd(name, {"data": str(i)}) for i in range(n)] and None)
    elif request.param == "queue":
        amqp_url = request.getfixturevalue("amqp_url")
        connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = connection.channel()
        name = f"contract-{unique}"
        channel.queue_declare(name)
        cleanup += [lambda: channel.queue_delete(name), connection.close]
        parts = urlsplit(amqp_url)
        uri = f"amqp://{parts.username}:{parts.password}@{parts.netloc.rpartition('@')[2]}"
        yield Kit(opener(f"{uri}{parts.path or '/%2F'}/{name}"),
                  lambda n: [channel.basic_publish("", name, str(i).encode())
                             for i in range(n)] and None)
    elif request.param == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
        bucket = f"contract-{unique}"
        s3.create_bucket(Bucket=bucket)

        def empty() -> None:
            for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
            s3.delete_bucket(Bucket=bucket)

        cleanup.append(empty)
        yield Kit(opener(f"s3://{bucket}/?endpoint={endpoint}"),
                  lambda n: [s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
                             for i in range(n)] and None)
    elif request.param == "table":
        import psycopg

        from broker_adapters.sources import prepare_source, purge_source

        server = request.getfixturevalue("pg_server")
        db = psycopg.connect(server.conninfo(), autocommit=True)
        table = f"contract_{unique}"
        db.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, v text)")
        db.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
        uri = f"{server.url}?table={table}"
        prepare_source(uri, mapping_id=mapping)
        cleanup += [lambda: purge_source(uri, mapping_id=mapping, redis=store, prefix=prefix),
                    lambda: db.execute(f"DROP TABLE {table}"), db.close]
        yield Kit(opener(uri), lambda n: [db.execute(f"INSERT INTO {table} (v) VALUES ('x')")
                                          for _ in range(n)] and None)
    elif request.param == "mqtt":
        import paho.mqtt.client as mqtt

        from broker_adapters.sources import prepare_source, purge_source

        server = request.getfixturevalue("mqtt_server")
        uri = f"{server.url}/contract-{unique}/#"
        prepare_source(uri, mapping_id=mapping)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", server.port)
        client.loop_start()
        cleanup += [lambda: purge_source(uri, mapping_id=mapping, redis=store, prefix=prefix),
                    client.disconnect, client.loop_stop]
        yield Kit(opener(uri), lambda n: [
            client.publish(f"contract-{unique}/t", str(i).encode(), qos=1).wait_for_publish(10)
            for i in range(n)] and None)
    else:
        state = f"{prefix}:mapping:{mapping}:schedule"

        def ticks(n: int) -> None:
            opener("schedule:rate(1 minute)")().close()  # the schedule exists ...
            first = anchor + (int(time.time() - anchor) // 60 - (n - 1)) * 60  # n ticks due
            store.hset(state, "next", repr(float(first)))

        yield Kit(opener("schedule:rate(1 minute)"), ticks)
    for step in cleanup:
        step()
    for key in store.scan_iter(f"{prefix}:*"):
        store.delete(key)
    store.close()


@pytest.fixture
def source(kit):
    """The kit's source, opened for one test and closed after it."""
    opened = kit.open()
    yield opened
    opened.close()


def test_a_source_is_a_source(source):
    assert isinstance(source, Source)
    assert source.kind in ("stream", "queue", "s3", "schedule", "table", "mqtt")
    assert source.ordered is (source.kind in ("stream", "table", "mqtt"))


def test_read_returns_no_more_than_asked_and_every_record_once(kit, source):
    kit.produce(3)
    first = source.read(2, 5.0)
    assert 1 <= len(first) <= 2
    records = first + _drain(source)
    assert len(records) == 3
    assert len({r.id for r in records}) == 3
    assert all(r.size >= len(r.data) > 0 and r.arrival > 0 for r in records)


def test_committed_records_are_not_offered_again(kit, source):
    kit.produce(2)
    records = _drain(source)
    assert len(records) == 2
    source.commit(records)
    assert source.read(10, 0.6) == []
    assert source.lag_s() in (0.0, None)


def test_retried_records_are_offered_again(kit, source):
    kit.produce(2)
    records = _drain(source)
    source.retry(records)
    again = _drain(source)
    assert sorted(r.id for r in again) == sorted(r.id for r in records)
    source.commit(again)


def test_records_never_committed_come_back_after_a_restart(kit):
    source = kit.open()
    kit.produce(2)
    records = _drain(source)
    assert len(records) == 2
    source.close()
    reopened = kit.open()
    try:
        again = _drain(reopened)
        assert sorted(r.id for r in again) == sorted(r.id for r in records)
        reopened.commit(again)
    finally:
        reopened.close()


def test_the_event_carries_the_records_in_their_aws_shape(kit, source):
    kit.produce(1)
    records = _drain(source)
    event = source.event(records)
    if source.kind in ("schedule", "mqtt"):  # one event per record (MQTT: batch size 1)
        assert event == records[0].record
    elif source.kind == "queue":
        assert list(event["rmqMessagesByQueue"].values()) == [[r.record for r in records]]
    else:
        assert event == {"Records": [r.record for r in records]}
    source.commit(records)


def test_an_empty_read_returns_nothing_after_waiting(source):
    started = time.monotonic()
    assert source.read(10, 0.3) == []
    assert time.monotonic() - started >= 0.25
