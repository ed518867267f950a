"""Lambda's stream rules on a PostgreSQL table: a private server, real runners and pollers."""

from __future__ import annotations

import threading

import psycopg
import pytest
from support.mappings import Harness, wait_for

from broker_adapters.sources import prepare_source, purge_source
from router.batching.invoker import PythonInvoker
from warren.store.mappings import MappingStore


@pytest.fixture
def h(redis_url, amqp_url, unique):
    harness = Harness(redis_url, amqp_url, f"wb-{unique}")
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
    conn.close()  # (a test that restarts the server has lost it already)
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as fresh:
        fresh.execute(f"DROP TABLE {name}")


def _insert(conn, table, start, count, per_txn=50, kind="a"):
    for first in range(start, start + count, per_txn):
        last = min(first + per_txn, start + count)
        conn.execute(f"INSERT INTO {table} SELECT g, g, %s"
                     " FROM generate_series(%s::int, %s::int) g", (kind, first, last - 1))


class Recorder:
    """Keeps every batch of n it saw; fails on the n it is told to (wholly or per item)."""

    def __init__(self, poison=(), partial=False):
        self.batches: list[list[int]] = []
        self.poison, self.partial = set(poison), partial
        self.lock = threading.Lock()

    def __call__(self, event, context):
        rows = [(r, int(r["dynamodb"]["NewImage"]["n"]["N"])) for r in event["Records"]]
        with self.lock:
            self.batches.append([n for _, n in rows])
        bad = [r for r, n in rows if n in self.poison]
        if bad and self.partial:
            return {"batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]}
                                          for r in bad]}
        if bad:
            raise ValueError("poison")
        return None

    @property
    def seen(self) -> list[int]:
        return [n for b in self.batches for n in b]


def test_every_change_arrives_once_in_commit_order_and_the_slot_moves_past_it(h, table):
    conn, name, uri = table
    spec = h.store.create(function="rec", source=uri, batch_size=100)
    _insert(conn, name, 0, 1000)
    handler = Recorder()
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: len(handler.seen) >= 1000, what="1000 changes")
    h.stop_all()
    assert handler.seen == list(range(1000))
    assert max(len(b) for b in handler.batches) <= 100
    lag = conn.execute("SELECT pg_current_wal_lsn() - confirmed_flush_lsn FROM "
                       "pg_replication_slots WHERE slot_name = %s",
                       (f"warren_{spec.uuid.replace('-', '')}",)).fetchone()[0]
    assert lag < 100_000  # the checkpoint reached the last transaction
    stats = h.store.stats(spec.uuid)
    assert (stats["read"], stats["succeeded"], stats["failed"]) == (1000, 1000, 0)


def test_a_failing_batch_is_retried_then_given_up_to_the_destination_with_its_records(h, table):
    conn, name, uri = table
    dlq = f"{h.prefix}-dlq"
    spec = h.store.create(function="rec", source=uri, batch_size=10, max_retries=2,
                          on_failure=f"redis+stream:///{dlq}")
    _insert(conn, name, 0, 30, per_txn=10)
    handler = Recorder(poison={15})
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: 29 in handler.seen, what="the changes after the poison batch")
    h.stop_all()
    assert handler.batches == [list(range(10))] + [list(range(10, 20))] * 3 + [list(range(20, 30))]
    [record] = h.destination_records(dlq)
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    info = record["DDBStreamBatchInfo"]
    assert info["batchSize"] == 10 and info["streamArn"].startswith("arn:aws:dynamodb:")
    assert [int(r["dynamodb"]["NewImage"]["n"]["N"]) for r in record["records"]] == list(
        range(10, 20))
    assert record["recordIds"] == [r["dynamodb"]["SequenceNumber"] for r in record["records"]]


def test_reported_item_failures_and_bisect_retry_from_the_failed_change(h, table):
    conn, name, uri = table
    spec = h.store.create(function="rec", source=uri, batch_size=10, max_retries=1,
                          report_item_failures=True, bisect=True)
    _insert(conn, name, 0, 10, per_txn=10)
    handler = Recorder(poison={6}, partial=True)
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: h.store.stats(spec.uuid)["failed"] >= 1, what="the poison given up")
    _insert(conn, name, 10, 2)
    wait_for(lambda: 11 in handler.seen, what="the later changes")
    h.stop_all()
    assert handler.batches[0] == list(range(10))
    assert handler.batches[1][0] == 6  # resumed at the reported failure
    assert sorted(set(handler.seen)) == list(range(12))


def test_filters_match_on_the_dynamodb_record(h, table):
    conn, name, uri = table
    spec = h.store.create(function="rec", source=uri, batch_size=10, filters=[
        '{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": ["keep"]}}}}'])
    _insert(conn, name, 0, 4, kind="keep")
    _insert(conn, name, 4, 4, kind="drop")
    conn.execute(f"UPDATE {name} SET n = n WHERE id < 2")
    _insert(conn, name, 8, 1, kind="keep")
    handler = Recorder()
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: 8 in handler.seen, what="the last kept change")
    wait_for(lambda: h.store.stats(spec.uuid)["filtered"] == 6, what="the filtered counts")
    h.stop_all()
    assert handler.seen == [0, 1, 2, 3, 8]


def test_a_postgresql_restart_mid_stream_loses_nothing_and_keeps_order(h, table, pg_server):
    conn, name, uri = table
    spec = h.store.create(function="rec", source=uri, batch_size=20)
    _insert(conn, name, 0, 200)
    handler = Recorder()
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: len(handler.seen) >= 40, what="the first changes")
    conn.close()
    pg_server.restart()
    conn = psycopg.connect(pg_server.conninfo(), autocommit=True)
    _insert(conn, name, 200, 200)
    wait_for(lambda: set(handler.seen) >= set(range(400)), timeout=60, what="all 400 changes")
    h.stop_all()
    conn.close()
    # Changes in flight when the server went away may come again, each run in order.
    firsts = list(dict.fromkeys(handler.seen))
    assert firsts == list(range(400))
