"""The lease semaphore against real Redis: limits, renewal by id, expiry, the shared pool."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from router.admission.semaphore import ACCOUNT_REASON, RESERVED_REASON, Semaphore


@pytest.fixture
def rdb(redis_url: str, unique: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    keys = list(client.scan_iter(f"s{unique}*"))
    if keys:
        client.delete(*keys)
    client.close()


def make(
    rdb: redis.Redis,
    unique: str,
    reservations: dict[str, int],
    account: int = 10,
    margin_s: float = 30.0,
) -> Semaphore:
    return Semaphore(rdb, f"s{unique}", account, lambda: reservations, margin_s=margin_s)


def test_reserved_function_admits_up_to_its_reservation(rdb: redis.Redis, unique: str) -> None:
    sem = make(rdb, unique, {"f": 3})
    grant = sem.acquire("f", [f"f|{n}" for n in range(5)], timeout_s=3)
    assert grant.admitted == [0, 1, 2]
    assert grant.limit == 3 and grant.reason == RESERVED_REASON
    assert grant.in_use == 3
    assert sem.acquire("f", ["f|late"], 3).admitted == []
    sem.release(grant.key, ["f|0"])
    assert sem.acquire("f", ["f|late"], 3).admitted == [0]


def test_redelivered_lease_is_renewed_not_counted_twice(rdb: redis.Redis, unique: str) -> None:
    sem = make(rdb, unique, {"f": 1})
    first = sem.acquire("f", ["f|a"], 3)
    again = sem.acquire("f", ["f|a"], 3)
    assert first.admitted == again.admitted == [0]
    assert first.in_use == again.in_use == 1
    assert again.expires >= first.expires
    assert rdb.zcard(first.key) == 1


def test_expired_lease_gives_its_slot_back(rdb: redis.Redis, unique: str) -> None:
    sem = make(rdb, unique, {"f": 1}, margin_s=0.0)
    assert sem.acquire("f", ["f|dead-holder"], timeout_s=0.3).admitted == [0]
    assert sem.acquire("f", ["f|b"], 0.3).admitted == []
    time.sleep(0.5)
    assert sem.acquire("f", ["f|b"], 0.3).admitted == [0]


def test_unreserved_functions_share_what_reservations_leave(rdb: redis.Redis, unique: str) -> None:
    sem = make(rdb, unique, {"big": 7}, account=10)
    g = sem.acquire("x", [f"x|{n}" for n in range(5)], 3)
    assert g.admitted == [0, 1, 2] and g.limit == 3 and g.reason == ACCOUNT_REASON
    assert sem.acquire("y", ["y|1"], 3).admitted == []  # same pool, now full
    assert sem.in_flight() == {"x": 3}


def test_reserved_zero_admits_nothing(rdb: redis.Redis, unique: str) -> None:
    sem = make(rdb, unique, {"off": 0})
    grant = sem.acquire("off", ["off|1"], 3)
    assert grant.admitted == [] and grant.limit == 0


def test_acquire_many_is_one_round_trip_per_batch(rdb: redis.Redis, unique: str) -> None:
    sem = make(rdb, unique, {"f": 2})
    grants = sem.acquire_many([("f", ["f|1", "f|2", "f|3"], 3), ("g", ["g|1"], 3)])
    assert [g.admitted for g in grants] == [[0, 1], [0]]
    sem._sha = "0" * 40  # as after SCRIPT FLUSH: the script is reloaded transparently
    grants = sem.acquire_many([("f", ["f|1"], 3), ("g", ["g|2"], 3)])
    assert [g.admitted for g in grants] == [[0], [0]]


def test_finished_leases_are_released_before_admitting(rdb: redis.Redis, unique: str) -> None:
    # Given a caller that holds the reply of its previous call (its lease not yet released)
    sem = make(rdb, unique, {"f": 1})
    assert sem.acquire("f", ["f|first"], 3).admitted == [0]
    # When it calls again, naming the finished lease, it is admitted in the same round trip
    assert sem.acquire("f", ["f|second"], 3, finished=["f|first"]).admitted == [0]
    assert rdb.zrange(f"s{unique}:sem:fn:f", 0, -1) == [b"f|second"]
