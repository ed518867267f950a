"""The RabbitMQ queue source against a real broker: rmq shape, manual acks, requeue, restarts."""

from __future__ import annotations

import base64
import threading
import time

import orjson
from support.queue_kit import depth, open_queue, publish, read_at_least


def test_records_have_lambdas_rmq_shape(amqp_url, store, channel, queue, unique):
    publish(channel, queue, [b'{"pizza": 1}'], content_type="application/json",
             headers={"h1": "value1", "n": 10}, delivery_mode=2, priority=3,
             message_id="msg-1", timestamp=2021, correlation_id="c-9")
    source = open_queue(amqp_url, store, queue, unique)
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
    publish(channel, queue, bodies, headers={"k": "v"})
    publish(channel, queue, [b"plain"])  # no properties at all
    source = open_queue(amqp_url, store, queue, unique)
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
    assert depth(channel, queue)[0] == 0


def test_ten_thousand_messages_survive_a_restart_mid_run(
    amqp_url, store, channel, queue, unique
):
    fast = channel.connection.channel()  # no publisher confirms: this is only the setup
    for i in range(10_000):
        fast.basic_publish("", queue, str(i).encode())
    source = open_queue(amqp_url, store, queue, unique, prefetch=2000)
    seen: list[int] = []
    while len(seen) < 5_000:
        batch = source.read(100, 1.0)
        seen.extend(int(r.data) for r in batch)
        source.commit(batch)
    unfinished = [int(r.data) for r in source.read(100, 1.0)]  # read, never acked
    seen.extend(unfinished)
    source.close()

    restarted = open_queue(amqp_url, store, queue, unique, prefetch=2000)
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
    assert depth(channel, queue)[0] == 0


def test_identical_messages_in_flight_get_distinct_ids(amqp_url, store, channel, queue, unique):
    publish(channel, queue, [b"same", b"same", b"other"])
    source = open_queue(amqp_url, store, queue, unique)
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
    publish(channel, queue, [str(i).encode() for i in range(30)])
    source = open_queue(amqp_url, store, queue, unique)
    got = []
    while len(got) < 30:
        got += source.read(30, 2.0)
    source.commit(got[:10])
    source.close()  # 20 read but never committed

    again = open_queue(amqp_url, store, queue, unique)
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
    publish(channel, queue, [str(i).encode() for i in range(10)])
    source = open_queue(amqp_url, store, queue, unique)
    try:
        batch = read_at_least(source, 10)
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
    assert depth(channel, queue)[0] == 0


def test_out_of_order_commits_and_retries_settle_exactly_their_messages(
    amqp_url, store, channel, queue, unique
):
    # Given 40 messages held at once (as batches running side by side hold them)
    publish(channel, queue, [str(i).encode() for i in range(40)])
    source = open_queue(amqp_url, store, queue, unique)
    try:
        held = read_at_least(source, 40)
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
    assert depth(channel, queue)[0] == 0


def test_prefetch_bounds_what_one_source_holds(amqp_url, store, channel, queue, unique):
    publish(channel, queue, [b"x"] * 50)
    source = open_queue(amqp_url, store, queue, unique, prefetch=20)
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


def test_close_leaves_no_thread_behind(amqp_url, store, queue, unique):
    before = {t.name for t in threading.enumerate()}
    source = open_queue(amqp_url, store, queue, unique)
    source.close()
    assert {t.name for t in threading.enumerate()} <= before
