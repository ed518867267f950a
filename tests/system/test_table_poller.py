"""kill -9 of a real poller process reading a PostgreSQL table: nothing lost, commit order kept."""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest
from support.fleet import stop_process
from support.mappings import Harness, wait_for
from test_poller import _seen, _spawn

from broker_adapters.sources import prepare_source, purge_source
from warren.store.mappings import MappingStore


@pytest.fixture
def h(redis_url, amqp_url, unique):
    harness = Harness(redis_url, amqp_url, f"wk-{unique}")
    harness.store = MappingStore(harness.redis, harness.prefix, prepare=prepare_source,
                                 purge=purge_source)
    yield harness
    for spec in harness.store.list_mappings():
        harness.store.purge(spec.uuid)
    harness.cleanup()


@pytest.fixture
def table(pg_server, unique):
    conn = psycopg.connect(pg_server.conninfo(), autocommit=True)
    name = f"rows_{unique}"
    conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, n int, kind text)")
    conn.execute(f"ALTER TABLE {name} REPLICA IDENTITY FULL")
    yield conn, name, f"{pg_server.url}?table=public.{name}"
    conn.close()
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as fresh:
        fresh.execute(f"DROP TABLE {name}")


def _insert(conn, table, count, per_txn=50):
    for first in range(0, count, per_txn):
        conn.execute(f"INSERT INTO {table} SELECT g, g, 'a'"
                     " FROM generate_series(%s::int, %s::int) g", (first, first + per_txn - 1))


@pytest.mark.slow
def test_kill_9_of_a_table_poller_loses_nothing_and_keeps_commit_order(h, table, redis_url,
                                                                       amqp_url):
    conn, name, uri = table
    count = 5000
    seen_key = f"{h.prefix}:seen"
    h.store.create(function="recorder", source=uri, batch_size=100)
    _insert(conn, name, count)
    first = _spawn(redis_url, amqp_url, h.prefix, seen_key, sleep_s=0.1)
    second = None
    try:
        wait_for(lambda: len(_seen(h.redis, seen_key)) >= count // 5, timeout=60,
                 what="the first poller at work")
        second = _spawn(redis_url, amqp_url, h.prefix, seen_key, sleep_s=0.1)
        # The second poller is up and idle (the mapping is the first one's): now kill -9.
        wait_for(lambda: len(h.store.live_pollers()) >= 2, timeout=60, what="two pollers")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        assert len(_seen(h.redis, seen_key)) < count, "finished before it was killed"
        wait_for(lambda: len(_seen(h.redis, seen_key)) == count, timeout=90,
                 what="every change after the takeover")
        time.sleep(0.5)
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)
    seen = _seen(h.redis, seen_key)
    assert sorted(seen) == list(range(count))
    # At most the batches in flight plus one transaction's head come twice.
    assert sum(v - 1 for v in seen.values()) <= 3 * 100 + 50
    order = [int(n) for n in h.redis.lrange(f"{seen_key}:order:table", 0, -1)]
    done: set[int] = set()
    for n in order:  # a replay may repeat a run, but nothing runs before all before it ran
        assert set(range(n)) <= done, f"{n} ran before an earlier change"
        done.add(n)
