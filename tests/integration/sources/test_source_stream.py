"""The Redis stream source against a real Redis: Kinesis shape, positions, order, crash recovery."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import orjson
import pytest
import redis

from broker_adapters.sources import open_source
from warren.errors import InvalidParameter, StoreUnavailable
from warren.source import Source


@pytest.fixture
def store(redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def stream(store, unique) -> Iterator[str]:
    name = f"test-src-{unique}"
    yield name
    store.delete(name)


def _open(redis_url, store, stream, unique, consumer="c1", **kw) -> Source:
    host_port = redis_url.split("://", 1)[1].split("/", 1)[0]
    return open_source(
        f"redis+stream://{host_port}/0/{stream}",
        mapping_id=kw.pop("mapping_id", f"m-{unique}"),
        redis=store,
        prefix=f"t-{unique}",
        options={"consumer": consumer, **kw.pop("options", {})},
        **kw,
    )


def _drain(source: Source, batch: int = 100, wait_s: float = 0.2) -> list:
    out = []
    while True:
        got = source.read(batch, wait_s)
        if not got:
            return out
        out.extend(got)


def test_records_have_kinesis_shape_and_data_travels_as_itself(redis_url, store, stream, unique):
    source = _open(redis_url, store, stream, unique)
    try:
        doc = orjson.dumps({"order": 7, "name": "ünïcode"})
        first = store.xadd(stream, {"data": doc}).decode()
        store.xadd(stream, {"data": b"\xff\x00raw", "partitionKey": "user-9"})
        store.xadd(stream, {"a": "1", "b": "two"})

        records = source.read(10, 1.0)

        assert [r.data for r in records] == [doc, b"\xff\x00raw", b'{"a":"1","b":"two"}']
        kinesis = records[0].record["kinesis"]
        assert base64.b64decode(kinesis["data"]) == doc
        assert kinesis["sequenceNumber"] == first == records[0].id
        assert kinesis["partitionKey"] == stream
        assert records[1].record["kinesis"]["partitionKey"] == "user-9"
        assert kinesis["approximateArrivalTimestamp"] == int(first.split("-")[0]) / 1000
        assert records[0].record["eventSource"] == "aws:kinesis"
        assert records[0].record["eventName"] == "aws:kinesis:record"
        assert records[0].record["eventSourceARN"].endswith(f":stream/{stream}")
        assert records[0].record["eventID"] == f"shardId-000000000000:{first}"
        assert source.event(records) == {"Records": [r.record for r in records]}
        assert all(r.size >= len(orjson.dumps(r.record)) for r in records)
        assert source.ordered is True and source.kind == "stream"
    finally:
        source.close()


def test_encoded_event_is_the_same_json_as_the_event(redis_url, store, stream, unique):
    # Given entries with odd partition keys (quotes, unicode, invalid UTF-8) and field maps
    source = _open(redis_url, store, stream, unique)
    try:
        store.xadd(stream, {"data": b'{"n": 1}', "partitionKey": 'a "quoted" \\ key'})
        store.xadd(stream, {"data": b"\xff\x00raw", "partitionKey": "ключ"})
        store.xadd(stream, {"data": b"x", "partitionKey": b"\xfe\xff"})
        store.xadd(stream, {"a": "1", "partitionKey": "k", "b": "two"})
        records = source.read(10, 1.0)

        # When the event is built both ways
        plain = orjson.dumps(source.event(records))
        encoded = orjson.dumps(source.encoded_event(records))  # type: ignore[attr-defined]

        # Then the bytes a handler receives are identical, and sizes bound each record
        assert encoded == plain
        assert [r.record["kinesis"]["partitionKey"] for r in records] == [
            'a "quoted" \\ key', "ключ", "\ufffd\ufffd", "k"]
        assert all(r.size >= len(orjson.dumps(r.record)) for r in records)
    finally:
        source.close()


def test_ten_thousand_records_survive_a_takeover_mid_run_in_order(
    redis_url, store, stream, unique
):
    pipe = store.pipeline(transaction=False)
    for i in range(10_000):
        pipe.xadd(stream, {"data": str(i)})
    pipe.execute()
    source = _open(redis_url, store, stream, unique, consumer="poller-a")
    seen: list[int] = []
    while len(seen) < 5_000:
        batch = source.read(100, 1.0)
        seen.extend(int(r.data) for r in batch)
        source.commit(batch)
    unfinished = [int(r.data) for r in source.read(100, 1.0)]  # poller-a dies holding these
    seen.extend(unfinished)
    source.close()

    heir = _open(redis_url, store, stream, unique, consumer="poller-b")
    try:
        while len(seen) < 10_100:
            batch = heir.read(100, 1.0)
            assert batch, "source ran dry before every record was read"
            seen.extend(int(r.data) for r in batch)
            heir.commit(batch)
        assert unfinished == list(range(5_000, 5_100))
        assert seen == list(range(5_100)) + list(range(5_000, 10_000))  # only those again
        assert heir.read(100, 0.1) == []
        assert store.xpending(stream, f"warren-m-{unique}")["pending"] == 0
    finally:
        heir.close()


def test_start_positions(redis_url, store, stream, unique):
    store.xadd(stream, {"data": "old"})
    time.sleep(0.01)
    cut = time.time()
    at = store.xadd(stream, {"data": "at"}, id=f"{int(cut * 1000)}-0")
    assert at
    horizon = _open(redis_url, store, stream, unique, mapping_id=f"h-{unique}")
    latest = _open(redis_url, store, stream, unique, mapping_id=f"l-{unique}",
                   start_position="latest")
    stamp = _open(redis_url, store, stream, unique, mapping_id=f"a-{unique}",
                  start_position=f"at-timestamp:{cut}")
    try:
        store.xadd(stream, {"data": "new"})
        assert [r.data for r in _drain(horizon)] == [b"old", b"at", b"new"]
        assert [r.data for r in _drain(latest)] == [b"new"]
        assert [r.data for r in _drain(stamp)] == [b"at", b"new"]
    finally:
        for s in (horizon, latest, stamp):
            s.close()


def test_iso_timestamp_start_position_is_accepted(redis_url, store, stream, unique):
    store.xadd(stream, {"data": "before"}, id="1000-0")
    store.xadd(stream, {"data": "after"}, id="1700000000000-0")
    source = _open(redis_url, store, stream, unique,
                   start_position="at-timestamp:2023-11-14T22:13:20Z")
    try:
        assert [r.data for r in _drain(source)] == [b"after"]
    finally:
        source.close()


def test_retry_redelivers_from_the_lowest_record_before_newer_ones(
    redis_url, store, stream, unique
):
    for i in range(10):
        store.xadd(stream, {"data": str(i)})
    source = _open(redis_url, store, stream, unique)
    try:
        batch = source.read(5, 1.0)
        assert [int(r.data) for r in batch] == [0, 1, 2, 3, 4]
        # Given the handler failed at record 2: 0 and 1 are done, 2..4 go back.
        source.commit(batch[:2])
        source.retry(batch[2:])

        again = source.read(5, 1.0)

        assert [int(r.data) for r in again] == [2, 3, 4, 5, 6]
        assert [r.id for r in again[:3]] == [r.id for r in batch[2:]]
        source.commit(again)
        assert [int(r.data) for r in _drain(source)] == [7, 8, 9]
    finally:
        source.close()


def test_in_flight_records_are_not_read_twice(redis_url, store, stream, unique):
    for i in range(6):
        store.xadd(stream, {"data": str(i)})
    source = _open(redis_url, store, stream, unique)
    try:
        first = source.read(3, 1.0)
        second = source.read(3, 1.0)
        source.retry(second[1:])  # a retry rewinds, but records still held stay held
        third = source.read(10, 0.2)
        assert [int(r.data) for r in first + second] == [0, 1, 2, 3, 4, 5]
        assert [int(r.data) for r in third] == [4, 5]
    finally:
        source.close()


def test_restart_redelivers_only_the_uncommitted_batch(redis_url, store, stream, unique):
    for i in range(300):
        store.xadd(stream, {"data": str(i)})
    source = _open(redis_url, store, stream, unique)
    done = []
    for _ in range(2):
        batch = source.read(100, 1.0)
        source.commit(batch)
        done.extend(int(r.data) for r in batch)
    lost = source.read(100, 1.0)  # read, never committed: the process dies here
    source.close()

    restarted = _open(redis_url, store, stream, unique)
    try:
        rest = _drain(restarted)
        assert [int(r.data) for r in rest] == list(range(200, 300))
        assert [r.id for r in rest] == [r.id for r in lost]
        assert done == list(range(200))
    finally:
        restarted.close()


def test_dead_consumers_pending_entries_are_reclaimed_first(redis_url, store, stream, unique):
    for i in range(20):
        store.xadd(stream, {"data": str(i)})
    dead = _open(redis_url, store, stream, unique, consumer="poller-a")
    held = dead.read(10, 1.0)
    dead.commit(held[:4])
    dead.close()  # poller-a is killed holding 4..9

    heir = _open(redis_url, store, stream, unique, consumer="poller-b")
    try:
        got = _drain(heir, batch=50)
        assert [int(r.data) for r in got] == list(range(4, 20))
        heir.commit(got)
        group = f"warren-m-{unique}"
        assert store.xpending(stream, group)["pending"] == 0
    finally:
        heir.close()


def test_a_zombies_idle_entries_are_reclaimed_after_the_threshold(redis_url, store, stream, unique):
    heir = _open(redis_url, store, stream, unique, consumer="poller-b",
                 options={"claim_idle_s": 0.3})
    try:
        assert heir.read(10, 0.05) == []
        store.xadd(stream, {"data": "late"})
        # A zombie of the previous owner reads after the heir opened, then dies.
        zombie = _open(redis_url, store, stream, unique, consumer="poller-a",
                       options={"claim_idle_s": 3600})
        assert [r.data for r in zombie.read(10, 1.0)] == [b"late"]
        zombie.close()
        deadline = time.monotonic() + 15
        got = []
        while not got and time.monotonic() < deadline:
            got = heir.read(10, 0.5)
        assert [r.data for r in got] == [b"late"]
    finally:
        heir.close()


def test_reopening_keeps_the_groups_checkpoint_over_the_start_position(
    redis_url, store, stream, unique
):
    for i in range(3):
        store.xadd(stream, {"data": str(i)})
    source = _open(redis_url, store, stream, unique)
    source.commit(source.read(2, 1.0))
    source.close()
    reopened = _open(redis_url, store, stream, unique, start_position="trim-horizon")
    try:
        assert [r.data for r in _drain(reopened)] == [b"2"]
    finally:
        reopened.close()


def test_trimmed_pending_entries_are_skipped_and_acked(redis_url, store, stream, unique):
    ids = [store.xadd(stream, {"data": str(i)}) for i in range(3)]
    source = _open(redis_url, store, stream, unique)
    try:
        batch = source.read(3, 1.0)
        store.xdel(stream, ids[1])
        source.retry(batch)
        assert [r.data for r in source.read(10, 0.2)] == [b"0", b"2"]
    finally:
        source.close()


def test_lag_is_the_age_of_the_oldest_unfinished_record(redis_url, store, stream, unique):
    source = _open(redis_url, store, stream, unique)
    try:
        assert source.lag_s() == 0.0
        store.xadd(stream, {"data": "x"}, id=f"{int((time.time() - 60) * 1000)}-0")
        assert 59 <= source.lag_s() < 120  # not read yet
        batch = source.read(1, 1.0)
        assert 59 <= source.lag_s() < 120  # read, not committed
        source.commit(batch)
        assert source.lag_s() == 0.0
    finally:
        source.close()


@pytest.mark.parametrize(
    "uri",
    ["redis+stream://", "redis+stream://host:6379/", "redis+stream://h/x/y/z",
     "redis+stream://h:notaport/0/s", "redis://h/0/s", "kafka://h/t"],
)
def test_bad_stream_uris_say_what_a_good_one_looks_like(store, unique, uri):
    with pytest.raises(InvalidParameter, match="redis\\+stream://"):
        open_source(uri, mapping_id=unique, redis=store, prefix="t")


def test_bad_start_position_is_invalid(redis_url, store, stream, unique):
    with pytest.raises(InvalidParameter, match="trim-horizon"):
        _open(redis_url, store, stream, unique, start_position="yesterday")


def test_unreachable_redis_is_store_unavailable(store, unique):
    with pytest.raises(StoreUnavailable):
        open_source("redis+stream://127.0.0.1:1/0/s", mapping_id=unique, redis=store, prefix="t")


def test_a_stream_on_warrens_own_redis_needs_no_host(redis_url, stream, unique):
    decoding = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        decoding.xadd(stream, {"data": "{}"})
        source = open_source(f"redis+stream:///{stream}", mapping_id=f"m-{unique}",
                             redis=decoding, prefix="t", options={"consumer": "c"})
        try:
            [record] = source.read(10, 1.0)
            assert record.data == b"{}"  # bytes, even through a decoding client
            source.commit([record])
        finally:
            source.close()
    finally:
        decoding.close()


def test_purging_a_mapping_drops_its_consumer_group(redis_url, store, stream, unique):
    from broker_adapters.sources import purge_source

    store.xadd(stream, {"data": "x"})
    _open(redis_url, store, stream, unique).close()
    assert [g["name"] for g in store.xinfo_groups(stream)] == [f"warren-m-{unique}".encode()]
    purge_source(f"redis+stream:///{stream}", mapping_id=f"m-{unique}", redis=store, prefix="t")
    assert store.xinfo_groups(stream) == []
    assert store.xlen(stream) == 1  # the stream's own data stays


def test_a_redis_outage_is_store_unavailable_and_nothing_is_lost(redis_url, store, stream, unique):
    from support.proxy import CuttableProxy

    host, _, port = redis_url.split("://", 1)[1].split("/", 1)[0].partition(":")
    proxy = CuttableProxy((host, int(port or 6379)))
    for i in range(50):
        store.xadd(stream, {"data": str(i)})
    source = open_source(f"redis+stream://127.0.0.1:{proxy.port}/0/{stream}",
                         mapping_id=f"m-{unique}", redis=store, prefix="t",
                         options={"consumer": "c1"})
    try:
        held = source.read(20, 1.0)
        source.commit(held[:10])

        proxy.cut()
        with pytest.raises(StoreUnavailable):
            source.read(10, 0.2)
        with pytest.raises(StoreUnavailable):
            source.commit(held[10:])
        proxy.restore()

        source.commit(held[10:])  # the pending entries outlive the connection
        rest = _drain(source)
        assert [int(r.data) for r in held + rest] == list(range(50))
        source.commit(rest)
        assert store.xpending(stream, f"warren-m-{unique}")["pending"] == 0
    finally:
        source.close()
        proxy.close()


def test_a_stream_deleted_under_the_source_is_read_anew(redis_url, store, stream, unique):
    store.xadd(stream, {"data": "before"})
    source = _open(redis_url, store, stream, unique)
    try:
        source.commit(source.read(10, 1.0))
        store.delete(stream)
        store.xadd(stream, {"data": "after"})
        assert [r.data for r in _drain(source)] == [b"after"]
    finally:
        source.close()
