"""The schedule source against a real Redis: one scheduled event per tick across the fleet."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
import redis

from broker_adapters.sources import open_source
from warren.errors import InvalidParameter
from warren.source import Source


@pytest.fixture
def store(redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix(store, unique) -> Iterator[str]:
    name = f"t-{unique}"
    yield name
    for key in store.scan_iter(f"{name}:*"):
        store.delete(key)


def _open(store, prefix, unique, expression="rate(1 minute)", consumer="c1", **options):
    return open_source(
        f"schedule:{expression}",
        mapping_id=f"m-{unique}",
        redis=store,
        prefix=prefix,
        options={"consumer": consumer, "region": "eu-west-1", "account": "123456789012",
                 **options},
    )


def _state(store, prefix, unique) -> str:
    return f"{prefix}:mapping:m-{unique}:schedule"


def test_a_due_tick_becomes_one_scheduled_event(store, prefix, unique):
    anchor = time.time() + 1.5
    source = _open(store, prefix, unique, anchor_s=anchor, rule_name="nightly")
    try:
        assert source.read(10, 0.0) == []
        records = source.read(10, 10.0)
        assert time.time() >= anchor
        [record] = records
        event = source.event(records)
        assert event == record.record
        assert event["version"] == "0"
        assert event["detail-type"] == "Scheduled Event"
        assert event["source"] == "aws.events"
        assert event["account"] == "123456789012" and event["region"] == "eu-west-1"
        assert event["resources"] == ["arn:aws:events:eu-west-1:123456789012:rule/nightly"]
        assert event["detail"] == {}
        assert event["time"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(anchor))
        assert uuid.UUID(event["id"])
        assert record.data == orjson.dumps(event)
        assert record.arrival == pytest.approx(anchor)
        source.commit(records)
        assert source.read(10, 0.2) == []  # the next tick is a minute away
    finally:
        source.close()


def test_each_tick_goes_to_exactly_one_of_many_pollers(store, prefix, unique):
    anchor = time.time() + 1.5
    sources = [_open(store, prefix, unique, anchor_s=anchor, consumer=f"p{i}") for i in range(4)]
    got: list[list] = [[] for _ in sources]

    def poll(i: int) -> None:
        got[i] = sources[i].read(10, 4.0)

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(len(sources))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        winners = [records for records in got if records]
        assert len(winners) == 1 and len(winners[0]) == 1
        claimed = store.get(f"{prefix}:mapping:m-{unique}:tick:{winners[0][0].arrival!r}")
        assert claimed is not None
    finally:
        for s in sources:
            s.close()


def test_ticks_missed_while_no_poller_ran_are_offered_oldest_first(store, prefix, unique):
    source = _open(store, prefix, unique, anchor_s=0)
    source.close()
    # Given every poller was down for the last three ticks of rate(1 minute):
    now = time.time()
    missed = [float((int(now) // 60 - k) * 60) for k in (2, 1, 0)]
    store.hset(_state(store, prefix, unique), "next", repr(missed[0]))

    again = _open(store, prefix, unique, anchor_s=0)
    try:
        records = again.read(10, 0.0)
        assert [r.arrival for r in records] == missed
        assert len({r.record["id"] for r in records}) == 3
    finally:
        again.close()


def test_ticks_older_than_the_maximum_age_are_dropped(store, prefix, unique):
    _open(store, prefix, unique, anchor_s=0).close()
    now = time.time()
    store.hset(_state(store, prefix, unique), "next", repr(float((int(now) // 60 - 10) * 60)))
    again = _open(store, prefix, unique, anchor_s=0, max_age_s=150)
    try:
        records = again.read(10, 0.0)
        assert 2 <= len(records) <= 3
        assert all(now - r.arrival <= 150 for r in records)
    finally:
        again.close()


def test_retry_offers_the_tick_again_and_commit_ends_it(store, prefix, unique):
    _open(store, prefix, unique, anchor_s=0).close()
    tick = float((int(time.time()) // 60) * 60)
    store.hset(_state(store, prefix, unique), "next", repr(tick))
    source = _open(store, prefix, unique, anchor_s=0)
    try:
        first = source.read(1, 0.0)
        source.retry(first)
        second = source.read(1, 0.0)
        assert [r.id for r in second] == [r.id for r in first]
        assert second[0].record == first[0].record  # same event id: recognisable as a retry
        source.commit(second)
        assert source.read(1, 0.0) == []
    finally:
        source.close()


def test_an_uncommitted_tick_is_adopted_by_the_next_owner(store, prefix, unique):
    _open(store, prefix, unique, anchor_s=0).close()
    tick = float((int(time.time()) // 60) * 60)
    store.hset(_state(store, prefix, unique), "next", repr(tick))
    dying = _open(store, prefix, unique, anchor_s=0, consumer="a")
    taken = dying.read(1, 0.0)
    assert len(taken) == 1
    dying.close()  # dies before committing

    heir = _open(store, prefix, unique, anchor_s=0, consumer="b")
    try:
        again = heir.read(1, 0.0)
        assert [r.id for r in again] == [r.id for r in taken]
        heir.commit(again)
    finally:
        heir.close()
    assert _open(store, prefix, unique, anchor_s=0, consumer="c").read(1, 0.0) == []


def test_changing_the_expression_restarts_from_now(store, prefix, unique):
    _open(store, prefix, unique, anchor_s=0).close()
    store.hset(_state(store, prefix, unique), "next", repr(float(int(time.time()) - 3600)))
    changed = _open(store, prefix, unique, expression="cron(0 12 * * ? *)")
    try:
        assert changed.read(10, 0.0) == []
        assert changed.lag_s() == 0.0
    finally:
        changed.close()


def test_an_event_carries_exactly_one_tick(store, prefix, unique):
    _open(store, prefix, unique, anchor_s=0).close()
    store.hset(_state(store, prefix, unique), "next",
               repr(float((int(time.time()) // 60 - 1) * 60)))
    source = _open(store, prefix, unique, anchor_s=0)
    try:
        records = source.read(10, 0.0)
        assert len(records) == 2
        with pytest.raises(InvalidParameter, match="exactly one tick"):
            source.event(records)
        assert source.lag_s() >= 60
    finally:
        source.close()


@pytest.mark.parametrize("uri", ["schedule:", "schedule:every day", "schedule:rate(1 minutes)",
                                 "schedule:cron(0 12 * * *)"])
def test_bad_schedule_uris_are_invalid(store, prefix, unique, uri):
    with pytest.raises(InvalidParameter, match="schedule|cron"):
        open_source(uri, mapping_id=unique, redis=store, prefix=prefix)


def test_schedule_source_satisfies_the_protocol(store, prefix, unique):
    source = _open(store, prefix, unique)
    assert isinstance(source, Source)
    assert source.kind == "schedule"


def test_purging_a_mapping_forgets_its_schedule_state(store, prefix, unique):
    from broker_adapters.sources import purge_source

    _open(store, prefix, unique, anchor_s=0).close()
    assert list(store.scan_iter(f"{prefix}:mapping:m-{unique}:schedule*"))
    purge_source("schedule:rate(1 minute)", mapping_id=f"m-{unique}", redis=store, prefix=prefix)
    assert not list(store.scan_iter(f"{prefix}:mapping:m-{unique}:*"))
