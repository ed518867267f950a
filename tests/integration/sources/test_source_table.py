"""The PostgreSQL table source on a private server: DynamoDB records, the slot, refusals."""

from __future__ import annotations

import orjson
import psycopg
import pytest
import redis
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent
from support.private_services import PgServer

from broker_adapters.sources import open_source, prepare_source, purge_source
from warren.errors import InvalidParameter, Unavailable
from warren.store.mappings import MappingStore


@pytest.fixture
def db(pg_server, unique):
    conn = psycopg.connect(pg_server.conninfo(), autocommit=True)
    table = f"t_{unique}"
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text, price numeric, "
                 "ok bool, doc jsonb, tags text[], blob bytea, at timestamptz)")
    conn.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
    yield conn, table
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.close()


@pytest.fixture
def store(redis_url, unique):
    client = redis.Redis.from_url(redis_url)
    yield client
    for key in client.scan_iter(f"tt-{unique}*"):
        client.delete(key)
    client.close()


def _open(pg_server, table, mapping, store, unique, view=""):
    uri = f"{pg_server.url}?table=public.{table}" + (f"&view={view}" if view else "")
    return open_source(uri, mapping_id=mapping, redis=store, prefix=f"tt-{unique}")


def _slots(conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT slot_name FROM pg_replication_slots")]


def test_inserts_updates_and_deletes_arrive_in_commit_order_as_dynamodb_records(
        pg_server, db, store, unique):
    conn, table = db
    prepare_source(f"{pg_server.url}?table={table}", mapping_id=f"m-{unique}")
    conn.execute(f"INSERT INTO {table} VALUES (1, 'a', 2.50, true, "
                 """'{"k": [1, "x", null, false]}', '{"a b",NULL}', '\\x0001', now())""")
    with conn.transaction():
        conn.execute(f"UPDATE {table} SET name = 'b' WHERE id = 1")
        conn.execute(f"INSERT INTO {table} (id) VALUES (2)")
    conn.execute(f"DELETE FROM {table} WHERE id = 1")
    source = _open(pg_server, table, f"m-{unique}", store, unique)
    try:
        records = source.read(10, 5.0)
        assert [r.record["eventName"] for r in records] == ["INSERT", "MODIFY", "INSERT", "REMOVE"]
        ids = [r.id for r in records]
        assert ids == sorted(ids) and len(set(ids)) == 4
        first = records[0].record
        assert first["eventSource"] == "aws:dynamodb"
        assert first["eventSourceARN"].startswith("arn:aws:dynamodb:")
        ddb = first["dynamodb"]
        assert ddb["Keys"] == {"id": {"N": "1"}}
        assert ddb["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert ddb["SequenceNumber"] == records[0].id
        assert ddb["SizeBytes"] > 0 and ddb["ApproximateCreationDateTime"] > 1.6e9
        image = ddb["NewImage"]
        assert image["name"] == {"S": "a"} and image["price"] == {"N": "2.50"}
        assert image["ok"] == {"BOOL": True}
        assert image["doc"] == {"M": {"k": {"L": [{"N": "1"}, {"S": "x"}, {"NULL": True},
                                                   {"BOOL": False}]}}}
        assert image["tags"] == {"L": [{"S": "a b"}, {"NULL": True}]}
        assert image["blob"] == {"B": "AAE="}
        assert "S" in image["at"] and "OldImage" not in ddb
        modify = records[1].record["dynamodb"]
        assert modify["OldImage"]["name"] == {"S": "a"} and modify["NewImage"]["name"] == {"S": "b"}
        assert records[2].record["dynamodb"]["NewImage"]["name"] == {"NULL": True}
        remove = records[3].record["dynamodb"]
        assert "NewImage" not in remove and remove["OldImage"]["name"] == {"S": "b"}
        source.commit(records)
    finally:
        source.close()


def test_views_choose_which_images_a_record_carries(pg_server, db, store, unique):
    conn, table = db
    for view in ("NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY"):
        prepare_source(f"{pg_server.url}?table={table}&view={view}", mapping_id=f"{view}-{unique}")
    conn.execute(f"INSERT INTO {table} (id, name) VALUES (7, 'x')")
    conn.execute(f"UPDATE {table} SET name = 'y' WHERE id = 7")
    for view, new, old in (("NEW_IMAGE", True, False), ("OLD_IMAGE", False, True),
                           ("KEYS_ONLY", False, False)):
        source = _open(pg_server, table, f"{view}-{unique}", store, unique, view)
        try:
            modify = source.read(10, 5.0)[1].record["dynamodb"]
            assert modify["StreamViewType"] == view
            assert modify["Keys"] == {"id": {"N": "7"}}
            assert ("NewImage" in modify, "OldImage" in modify) == (new, old)
        finally:
            source.close()
            purge_source(f"{pg_server.url}?table={table}&view={view}",
                         mapping_id=f"{view}-{unique}", redis=store, prefix=f"tt-{unique}")


def test_a_checkpoint_is_the_slot_advanced_past_whole_transactions_only(
        pg_server, db, store, unique):
    conn, table = db
    mapping = f"m-{unique}"
    prepare_source(f"{pg_server.url}?table={table}", mapping_id=mapping)
    with conn.transaction():
        for i in range(3):
            conn.execute(f"INSERT INTO {table} (id) VALUES ({i})")
    conn.execute(f"INSERT INTO {table} (id) VALUES (3)")
    source = _open(pg_server, table, mapping, store, unique)
    records = source.read(10, 5.0)
    assert len(records) == 4
    source.commit(records[:2])  # part of the first transaction: the slot cannot move yet
    source.close()
    source = _open(pg_server, table, mapping, store, unique)
    again = source.read(10, 5.0)
    assert [r.id for r in again] == [r.id for r in records]
    source.commit(again[:3])  # the whole first transaction
    source.close()
    source = _open(pg_server, table, mapping, store, unique)
    try:
        assert [r.id for r in source.read(10, 5.0)] == [records[3].id]
    finally:
        source.close()


def test_retried_records_come_back_before_newer_ones(pg_server, db, store, unique):
    conn, table = db
    mapping = f"m-{unique}"
    prepare_source(f"{pg_server.url}?table={table}", mapping_id=mapping)
    for i in range(4):
        conn.execute(f"INSERT INTO {table} (id) VALUES ({i})")
    source = _open(pg_server, table, mapping, store, unique)
    try:
        first = source.read(2, 5.0)
        source.retry(first)
        again = source.read(10, 5.0)
        assert [r.id for r in again[:2]] == [r.id for r in first] and len(again) == 4
    finally:
        source.close()


def test_deleting_the_mapping_drops_its_slot_and_publication(pg_server, db, store, unique):
    conn, table = db
    uri = f"{pg_server.url}?table={table}"
    prepare_source(uri, mapping_id=f"m-{unique}")
    slot = f"warren_m{unique}"
    assert slot in _slots(conn)
    purge_source(uri, mapping_id=f"m-{unique}", redis=store, prefix=f"tt-{unique}")
    assert slot not in _slots(conn)
    assert conn.execute("SELECT count(*) FROM pg_publication WHERE pubname = %s",
                        (slot,)).fetchone() == (0,)


def test_mapping_create_refuses_what_cannot_work_saying_how_to_fix_it(
        pg_server, db, store, unique):
    from broker_adapters.sources import prepare_source as prepare

    conn, table = db
    mappings = MappingStore(store, f"tt-{unique}", prepare=prepare, purge=purge_source)
    conn.execute(f"CREATE TABLE nokey_{unique} (a int)")
    conn.execute(f"CREATE TABLE plain_{unique} (a int PRIMARY KEY)")
    try:
        with pytest.raises(InvalidParameter, match="ADD PRIMARY KEY"):
            mappings.create(function="f", source=f"{pg_server.url}?table=nokey_{unique}")
        with pytest.raises(InvalidParameter, match="REPLICA IDENTITY FULL"):
            mappings.create(function="f", source=f"{pg_server.url}?table=plain_{unique}")
        assert mappings.create(function="f", batch_size=5,
                               source=f"{pg_server.url}?table=plain_{unique}&view=NEW_IMAGE")
        with pytest.raises(InvalidParameter, match="does not exist"):
            mappings.create(function="f", source=f"{pg_server.url}?table=absent_{unique}")
        for bad in (f"{pg_server.url}", f"{pg_server.url}?table=a.b.c",
                    f"{pg_server.url}?table={table}&view=ALL", f"{pg_server.url}?tabel={table}",
                    f"{pg_server.url}?table={table}&poll_ms=1",
                    f"postgres://127.0.0.1:99999/postgres?table={table}",
                    f"postgres://127.0.0.1/?table={table}"):
            with pytest.raises(InvalidParameter, match="postgres://"):
                mappings.create(function="f", source=bad)
        with pytest.raises(Unavailable):
            mappings.create(function="f", source=f"postgres://127.0.0.1:1/x?table={table}")
        assert len(mappings.list_mappings()) == 1
    finally:
        for spec in mappings.list_mappings():
            mappings.delete(spec.uuid)
        conn.execute(f"DROP TABLE nokey_{unique}, plain_{unique}")


def test_mapping_create_refuses_a_server_without_logical_decoding(store, unique):
    server = PgServer(wal_level="replica")
    try:
        conn = psycopg.connect(server.conninfo(), autocommit=True)
        conn.execute("CREATE TABLE t (a int PRIMARY KEY)")
        conn.close()
        mappings = MappingStore(store, f"tt-{unique}", prepare=prepare_source)
        with pytest.raises(InvalidParameter, match="wal_level = logical"):
            mappings.create(function="f", source=f"{server.url}?table=t")
        assert mappings.list_mappings() == []
    finally:
        server.close()


def test_powertools_reads_the_event_as_a_dynamodb_stream_event(pg_server, db, store, unique):
    conn, table = db
    prepare_source(f"{pg_server.url}?table={table}", mapping_id=f"m-{unique}")
    conn.execute(f"INSERT INTO {table} (id, name, price) VALUES (5, 'pen', 1.25)")
    conn.execute(f"DELETE FROM {table} WHERE id = 5")
    source = _open(pg_server, table, f"m-{unique}", store, unique)
    try:
        records = source.read(10, 5.0)
        event = DynamoDBStreamEvent(source.event(records))
        insert, remove = list(event.records)
        assert insert.event_name.name == "INSERT" and remove.event_name.name == "REMOVE"
        assert insert.event_source == "aws:dynamodb"
        assert insert.dynamodb.keys == {"id": 5}
        assert insert.dynamodb.new_image["name"] == "pen"
        assert str(insert.dynamodb.new_image["price"]) == "1.25"
        assert insert.dynamodb.sequence_number == records[0].id
        assert insert.dynamodb.stream_view_type.name == "NEW_AND_OLD_IMAGES"
        assert insert.dynamodb.size_bytes > 0
        assert remove.dynamodb.old_image["name"] == "pen"
    finally:
        source.close()


def test_the_cli_refuses_a_table_without_a_primary_key_with_the_fix(pg_server, redis_url,
                                                                    unique, tmp_path):
    from click.testing import CliRunner

    from warren.cli import cli

    conn = psycopg.connect(pg_server.conninfo(), autocommit=True)
    conn.execute(f"CREATE TABLE cli_{unique} (a int)")
    env = {"WARREN_REDIS_URL": redis_url, "WARREN_PREFIX": f"tt-{unique}"}
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text("def handler(event, context):\n    return None\n")

    def run(*args):
        return CliRunner().invoke(cli, list(args), env=env, auto_envvar_prefix="WARREN")

    try:
        assert run("function", "create", "f", "--code", str(code), "--handler",
                   "app.handler").exit_code == 0
        result = run("mapping", "create", "--function", "f", "--source",
                     f"{pg_server.url}?table=cli_{unique}")
        assert result.exit_code != 0
        assert f"ALTER TABLE public.cli_{unique} ADD PRIMARY KEY" in result.output
        conn.execute(f"ALTER TABLE cli_{unique} ADD PRIMARY KEY (a)")
        conn.execute(f"ALTER TABLE cli_{unique} REPLICA IDENTITY FULL")
        made = run("mapping", "create", "--function", "f", "--source",
                   f"{pg_server.url}?table=cli_{unique}", "-o", "json")
        assert made.exit_code == 0, made.output
        uuid = orjson.loads(made.output)["uuid"]
        slot = f"warren_{uuid.replace('-', '')}"
        assert slot in _slots(conn)
        assert run("mapping", "delete", uuid).exit_code == 0
        assert slot not in _slots(conn)
    finally:
        conn.execute(f"DROP TABLE cli_{unique}")
        conn.close()
