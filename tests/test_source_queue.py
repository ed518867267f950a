"""The RabbitMQ queue source against a real broker: rmq shape, manual acks, requeue, outages."""

from __future__ import annotations

import base64
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import orjson
import pika
import pytest
import redis
from mapping_handlers.proxy import CuttableProxy

from broker_adapters.sources import Source, open_source
from warren.errors import BrokerUnavailable, InvalidParameter, NotFound


@pytest.fixture
def store(redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def channel(amqp_url):
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    ch = connection.channel()
    ch.confirm_delivery()
    yield ch
    connection.close()


@pytest.fixture
def queue(channel, unique) -> Iterator[str]:
    name = f"test-src-{unique}"
    channel.queue_declare(name, durable=True)
    yield name
    channel.queue_delete(name)


def _uri(amqp_url: str, queue: str, port: int | None = None) -> str:
    parts = urlsplit(amqp_url)
    host = f"{parts.hostname}:{port or parts.port or 5672}"
    return f"amqp://{parts.username}:{parts.password}@{host}{parts.path or '/%2F'}/{queue}"


def _open(amqp_url, store, queue, unique, port=None, **options) -> Source:
    return open_source(
        _uri(amqp_url, queue, port),
        mapping_id=f"m-{unique}",
        redis=store,
        prefix=f"t-{unique}",
        options={"consumer": "c1", **options},
    )


def _publish(channel, queue, bodies, **props) -> None:
    for body in bodies:
        channel.basic_publish("", queue, body, pika.BasicProperties(**props))


def _read_at_least(source, count: int, size: int | None = None) -> list:
    """Read until `count` records are held (each read waits up to 2 s)."""
    held: list = []
    while len(held) < count:
        held += source.read(size or count, 2.0)
    return held


def _depth(channel, queue) -> tuple[int, int]:
    ok = channel.queue_declare(queue, passive=True).method
    return ok.message_count, ok.consumer_count


def test_records_have_lambdas_rmq_shape(amqp_url, store, channel, queue, unique):
    _publish(channel, queue, [b'{"pizza": 1}'], content_type="application/json",
             headers={"h1": "value1", "n": 10}, delivery_mode=2, priority=3,
             message_id="msg-1", timestamp=2021, correlation_id="c-9")
    source = _open(amqp_url, store, queue, unique)
    try:
        [record] = source.read(10, 5.0)
        assert record.id == "msg-1"
        assert record.data == b'{"pizza": 1}'
        props = record.record["basicProperties"]
        assert props["contentType"] == "application/json"
        assert props["headers"] == {"h1": {"bytes": list(b"value1")}, "n": 10}
        assert props["deliveryMode"] == 2 and props["priority"] == 3
        assert props["messageId"] == "msg-1" and props["correlationId"] == "c-9"
        assert props["timestamp"] == "Jan 1, 1970, 12:33:41 AM"
        assert props["bodySize"] == len(record.data)
        assert props["contentEncoding"] is None and props["replyTo"] is None
        assert record.record["redelivered"] is False
        assert base64.b64decode(record.record["data"]) == b'{"pizza": 1}'
        event = source.event([record])
        assert event["eventSource"] == "aws:rmq"
        assert event["eventSourceArn"].startswith("arn:aws:mq:")
        assert event["rmqMessagesByQueue"] == {f"{queue}::/": [record.record]}
        assert source.ordered is False and source.kind == "queue"
        source.commit([record])
    finally:
        source.close()


def test_bodies_of_every_size_arrive_whole_and_encoded_events_match(
    amqp_url, store, channel, queue, unique
):
    # Given an empty body, a small one, and bodies spread over several AMQP frames
    bodies = [b"", b"x", bytes(range(256)) * 1024, b"y" * 300_000]
    _publish(channel, queue, bodies, headers={"k": "v"})
    _publish(channel, queue, [b"plain"])  # no properties at all
    source = _open(amqp_url, store, queue, unique)
    try:
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 5 and time.monotonic() < deadline:
            got += source.read(10, 1.0)

        # Then each arrives whole, with its properties, and both event forms are the same JSON
        assert [r.data for r in got] == [*bodies, b"plain"]
        assert [r.record["basicProperties"]["headers"] for r in got] == [
            {"k": {"bytes": list(b"v")}}] * 4 + [None]
        assert orjson.dumps(source.encoded_event(got)) == orjson.dumps(source.event(got))
        source.commit(got)
    finally:
        source.close()
    assert _depth(channel, queue)[0] == 0


def test_ten_thousand_messages_survive_a_restart_mid_run(
    amqp_url, store, channel, queue, unique
):
    fast = channel.connection.channel()  # no publisher confirms: this is only the setup
    for i in range(10_000):
        fast.basic_publish("", queue, str(i).encode())
    source = _open(amqp_url, store, queue, unique, prefetch=2000)
    seen: list[int] = []
    while len(seen) < 5_000:
        batch = source.read(100, 1.0)
        seen.extend(int(r.data) for r in batch)
        source.commit(batch)
    unfinished = [int(r.data) for r in source.read(100, 1.0)]  # read, never acked
    seen.extend(unfinished)
    source.close()

    restarted = _open(amqp_url, store, queue, unique, prefetch=2000)
    try:
        deadline = time.monotonic() + 90
        while len(seen) < 10_000 + len(unfinished) and time.monotonic() < deadline:
            batch = restarted.read(100, 1.0)
            seen.extend(int(r.data) for r in batch)
            restarted.commit(batch)
        assert sorted(set(seen)) == list(range(10_000))  # none missing
        repeated = sorted(n for n in set(seen) if seen.count(n) > 1)
        assert repeated == sorted(unfinished)  # duplicates only where the restart was
        assert restarted.read(100, 0.2) == []
    finally:
        restarted.close()
    assert _depth(channel, queue)[0] == 0


def test_identical_messages_in_flight_get_distinct_ids(amqp_url, store, channel, queue, unique):
    _publish(channel, queue, [b"same", b"same", b"other"])
    source = _open(amqp_url, store, queue, unique)
    try:
        records = []
        while len(records) < 3:
            records += source.read(10, 2.0)
        assert len({r.id for r in records}) == 3
        source.commit(records)
    finally:
        source.close()


def test_uncommitted_messages_come_back_when_the_source_dies(
    amqp_url, store, channel, queue, unique
):
    _publish(channel, queue, [str(i).encode() for i in range(30)])
    source = _open(amqp_url, store, queue, unique)
    got = []
    while len(got) < 30:
        got += source.read(30, 2.0)
    source.commit(got[:10])
    source.close()  # 20 read but never committed

    again = _open(amqp_url, store, queue, unique)
    try:
        back = []
        while len(back) < 20:
            batch = again.read(30, 2.0)
            assert batch, "uncommitted messages did not come back"
            back += batch
        assert sorted(int(r.data) for r in back) == sorted(int(r.data) for r in got[10:])
        assert all(r.record["redelivered"] for r in back)
        assert again.read(30, 0.3) == []
        again.commit(back)
    finally:
        again.close()


def test_retry_requeues_only_the_failed_records(amqp_url, store, channel, queue, unique):
    _publish(channel, queue, [str(i).encode() for i in range(10)])
    source = _open(amqp_url, store, queue, unique)
    try:
        batch = _read_at_least(source, 10)
        failed = [r for r in batch if int(r.data) in (3, 7)]
        source.commit([r for r in batch if r not in failed])
        source.retry(failed)

        again = source.read(10, 5.0)
        while len(again) < 2:
            more = source.read(10, 2.0)
            assert more
            again += more

        assert sorted(int(r.data) for r in again) == [3, 7]
        assert sorted(r.id for r in again) == sorted(r.id for r in failed)
        assert all(r.record["redelivered"] for r in again)
        source.commit(again)
        assert source.read(10, 0.3) == []
    finally:
        source.close()
    assert _depth(channel, queue)[0] == 0


def test_out_of_order_commits_and_retries_settle_exactly_their_messages(
    amqp_url, store, channel, queue, unique
):
    # Given 40 messages held at once (as batches running side by side hold them)
    _publish(channel, queue, [str(i).encode() for i in range(40)])
    source = _open(amqp_url, store, queue, unique)
    try:
        held = _read_at_least(source, 40)
        by_n = {int(r.data): r for r in held}

        # When every third is committed, then a scattered set is retried (one write each time)
        source.commit([by_n[n] for n in range(0, 40, 3)])
        retried = [n for n in range(40) if n % 3 and n % 4 == 1]
        source.retry([by_n[n] for n in retried])

        # Then only the retried ones come back, and the rest commit cleanly
        again = []
        deadline = time.monotonic() + 10
        while len(again) < len(retried) and time.monotonic() < deadline:
            again += source.read(40, 0.5)
        assert sorted(int(r.data) for r in again) == retried
        rest = [by_n[n] for n in range(40) if n % 3 and n not in retried]
        source.commit(rest + again)
        assert source.read(40, 0.3) == []
    finally:
        source.close()
    assert _depth(channel, queue)[0] == 0


def test_prefetch_bounds_what_one_source_holds(amqp_url, store, channel, queue, unique):
    _publish(channel, queue, [b"x"] * 50)
    source = _open(amqp_url, store, queue, unique, prefetch=20)
    try:
        held = []
        deadline = time.monotonic() + 10
        while len(held) < 20 and time.monotonic() < deadline:
            held += source.read(50, 0.5)
        time.sleep(0.5)
        held += source.read(50, 0.2)
        assert len(held) == 20  # nothing beyond the window until some are acked
        source.commit(held)
        assert len(source.read(50, 5.0)) > 0
    finally:
        source.close()


def test_connection_loss_is_broker_unavailable_and_unacked_messages_return(
    amqp_url, store, channel, queue, unique
):
    parts = urlsplit(amqp_url)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5672))
    _publish(channel, queue, [str(i).encode() for i in range(200)])
    source = _open(amqp_url, store, queue, unique, port=proxy.port, prefetch=50)
    try:
        held = []
        while len(held) < 50:
            held += source.read(50, 2.0)
        source.commit(held[:20])
        time.sleep(0.5)  # let the acks pass the proxy before cutting it

        # When: the network to the broker is cut for a while.
        proxy.cut()
        with pytest.raises(BrokerUnavailable):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                source.read(10, 0.5)
        with pytest.raises(BrokerUnavailable, match="deliver them again"):
            source.commit(held[20:])  # their connection is gone: they were not acked
        time.sleep(2)
        proxy.restore()

        # Then: every message not acked comes back, and the acked ones do not.
        seen = []
        deadline = time.monotonic() + 60
        while len(seen) < 180 and time.monotonic() < deadline:
            try:
                batch = source.read(100, 1.0)
            except BrokerUnavailable:
                continue
            seen += [int(r.data) for r in batch]
            source.commit(batch)
        done_before = {int(r.data) for r in held[:20]}
        assert sorted(seen) == sorted(set(range(200)) - done_before)
    finally:
        source.close()
        proxy.close()


def test_a_missing_queue_is_not_found(amqp_url, store, unique):
    with pytest.raises(NotFound, match="does not exist"):
        _open(amqp_url, store, f"missing-{uuid.uuid4().hex}", unique)


def test_an_unreachable_broker_is_broker_unavailable(store, unique):
    port = socket.create_server(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    with pytest.raises(BrokerUnavailable):
        open_source(f"amqp://guest:guest@127.0.0.1:{free}/%2F/q", mapping_id=unique,
                    redis=store, prefix="t", options={"consumer": "c"})


@pytest.mark.parametrize(
    "uri", ["amqp://h/q", "amqp://h:5672/%2F/", "amqp://h/%2F/q/extra", "amqp://h:x/%2F/q"]
)
def test_bad_queue_uris_say_what_a_good_one_looks_like(store, unique, uri):
    with pytest.raises(InvalidParameter, match="VHOST/QUEUE"):
        open_source(uri, mapping_id=unique, redis=store, prefix="t")


def test_close_leaves_no_thread_behind(amqp_url, store, queue, unique):
    before = {t.name for t in threading.enumerate()}
    source = _open(amqp_url, store, queue, unique)
    source.close()
    assert {t.name for t in threading.enumerate()} <= before


def test_deleting_the_queue_under_a_source_is_not_found(amqp_url, store, channel, unique):
    name = f"test-src-doomed-{unique}"
    channel.queue_declare(name)
    source = _open(amqp_url, store, name, unique)
    try:
        assert source.read(10, 0.2) == []
        channel.queue_delete(name)
        with pytest.raises(NotFound, match="does not exist"):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                source.read(10, 0.5)
    finally:
        source.close()


def test_a_queue_in_another_vhost_is_named_queue_colon_colon_vhost(amqp_url, store, unique):
    import shutil
    import subprocess

    ctl = shutil.which("rabbitmqctl")
    if ctl is None or urlsplit(amqp_url).hostname not in ("127.0.0.1", "localhost"):
        pytest.skip("needs rabbitmqctl for the local broker to create a vhost")
    vhost = f"warren-test-{unique}"

    def run(*args: str) -> None:
        subprocess.run([ctl, *args], check=True, capture_output=True, timeout=60)

    run("add_vhost", vhost)
    try:
        run("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        parts = urlsplit(amqp_url)
        params = pika.ConnectionParameters(
            host=parts.hostname, port=parts.port or 5672, virtual_host=vhost,
            credentials=pika.PlainCredentials(parts.username or "guest",
                                              parts.password or "guest"))
        connection = pika.BlockingConnection(params)
        connection.channel().queue_declare("orders")
        connection.channel().basic_publish("", "orders", b"in a vhost")
        source = open_source(
            f"amqp://{parts.username}:{parts.password}@{parts.hostname}:{parts.port or 5672}"
            f"/{vhost}/orders",
            mapping_id=f"m-{unique}", redis=store, prefix="t", options={"consumer": "c"},
        )
        try:
            records = source.read(10, 5.0)
            assert [r.data for r in records] == [b"in a vhost"]
            assert list(source.event(records)["rmqMessagesByQueue"]) == [f"orders::{vhost}"]
            source.commit(records)
        finally:
            source.close()
            connection.close()
    finally:
        run("delete_vhost", vhost)


def test_wrong_credentials_are_broker_unavailable_with_a_hint(amqp_url, store, queue, unique):
    parts = urlsplit(amqp_url)
    host = f"{parts.hostname}:{parts.port or 5672}"
    uri = f"amqp://{parts.username}:wrong-{unique}@{host}/%2F/{queue}"
    with pytest.raises(BrokerUnavailable, match="user and password"):
        open_source(uri, mapping_id=unique, redis=store, prefix="t", options={"consumer": "c"})


def test_an_unknown_vhost_is_broker_unavailable_with_a_hint(amqp_url, store, queue, unique):
    parts = urlsplit(amqp_url)
    uri = (f"amqp://{parts.username}:{parts.password}@{parts.hostname}:{parts.port or 5672}"
           f"/no-such-vhost-{unique}/{queue}")
    with pytest.raises(BrokerUnavailable, match="vhost"):
        open_source(uri, mapping_id=unique, redis=store, prefix="t", options={"consumer": "c"})
