"""A PostgreSQL table source's location, its checks, and its replication slot and publication."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from psycopg import sql

from broker_adapters.sources.dynamodb import VIEWS
from warren.errors import InvalidParameter, Unavailable

_URI_HINT = (
    "a table source looks like postgres://USER:PASS@HOST:5432/DB?table=SCHEMA.NAME"
    f"[&view={'|'.join(VIEWS)}][&poll_ms=20]"
)
log = logging.getLogger("warren.sources")
_DROP_ATTEMPTS = 25


@dataclass(frozen=True)
class TableLocation:
    host: str | None
    port: int
    db: str
    schema: str
    table: str
    view: str = "NEW_AND_OLD_IMAGES"
    username: str | None = None
    password: str | None = None
    sslmode: str | None = None
    poll_ms: int = 20  # how often an idle slot is asked for changes

    @classmethod
    def parse(cls, uri: str) -> TableLocation:
        parts = urlsplit(uri)
        if parts.scheme not in ("postgres", "postgresql"):
            raise InvalidParameter(f"bad source {uri!r}: {_URI_HINT}")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = set(query) - {"table", "view", "sslmode", "poll_ms"}
        db = unquote(parts.path.lstrip("/"))
        table = query.get("table", "")
        if unknown or not db or "/" in db or not table or table.count(".") > 1:
            raise InvalidParameter(f"bad source {uri!r}: {_URI_HINT}")
        schema, _, name = table.rpartition(".")
        view = query.get("view", "NEW_AND_OLD_IMAGES").upper()
        if view not in VIEWS or not name:
            raise InvalidParameter(f"bad source {uri!r}: {_URI_HINT}")
        try:
            port = parts.port or 5432
        except ValueError:
            raise InvalidParameter(f"bad port in {uri!r}: {_URI_HINT}") from None
        poll = query.get("poll_ms", "20")
        if not poll.isdigit() or not 5 <= int(poll) <= 10_000:
            raise InvalidParameter(f"bad poll_ms in {uri!r}: 5..10000 milliseconds")
        return cls(
            host=parts.hostname or None, port=port, db=db, schema=schema or "public",
            table=name, view=view,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            sslmode=query.get("sslmode"), poll_ms=int(poll),
        )

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"

    def connect(self) -> psycopg.Connection[Any]:
        """An autocommit connection (slot functions refuse to run in a transaction that wrote)."""
        params: dict[str, Any] = {"dbname": self.db, "port": self.port, "connect_timeout": 5,
                                  "application_name": "warren"}
        for key, value in (("host", self.host), ("user", self.username),
                           ("password", self.password), ("sslmode", self.sslmode)):
            if value is not None:
                params[key] = value
        with pg_errors(f"PostgreSQL {self.host or 'localhost'}:{self.port}/{self.db}"):
            return psycopg.connect(autocommit=True, **params)


def slot_name(mapping_id: str) -> str:
    """The replication slot (and publication) of one mapping: a legal, stable identifier."""
    return "warren_" + "".join(c for c in mapping_id.lower() if c.isalnum())


@contextmanager
def pg_errors(what: str) -> Iterator[None]:
    """psycopg's errors as Warren's: a lost connection or a busy slot is Unavailable (the
    runner reopens and retries), anything else the server refused InvalidParameter."""
    try:
        yield
    except psycopg.errors.ObjectInUse as exc:  # another session holds the slot for now
        raise Unavailable(f"{what}: {exc}".strip()) from exc
    except psycopg.OperationalError as exc:
        raise Unavailable(f"{what} is unreachable: {exc}".strip()) from exc
    except psycopg.Error as exc:  # refused: privileges, a dropped table, ...
        raise InvalidParameter(f"{what}: {exc}".strip()) from exc


def check_table(conn: psycopg.Connection[Any], location: TableLocation) -> list[str]:
    """Refuse what cannot work (with the command that fixes it); returns the key columns."""
    where = location.qualified
    level = conn.execute("SHOW wal_level").fetchone()
    if level is None or level[0] != "logical":
        raise InvalidParameter(
            f"PostgreSQL has wal_level={level[0] if level else '?'}; logical decoding needs "
            "`ALTER SYSTEM SET wal_level = logical;` and a restart of PostgreSQL"
        )
    row = conn.execute(
        "SELECT c.oid, c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
        (location.schema, location.table),
    ).fetchone()
    if row is None:
        raise InvalidParameter(f"table {where} does not exist in database {location.db!r}")
    oid, identity = row
    keys = [r[0] for r in conn.execute(
        "SELECT a.attname FROM pg_index i JOIN LATERAL unnest(i.indkey) WITH ORDINALITY"
        " AS k(attnum, n) ON true JOIN pg_attribute a ON a.attrelid = i.indrelid"
        " AND a.attnum = k.attnum WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.n",
        (oid,),
    ).fetchall()]
    if not keys:
        raise InvalidParameter(
            f"table {where} has no primary key: stream records need one "
            f"(`ALTER TABLE {where} ADD PRIMARY KEY (...);`)"
        )
    identity = identity.decode() if isinstance(identity, bytes) else identity
    if location.view in ("NEW_AND_OLD_IMAGES", "OLD_IMAGE") and identity != "f":
        raise InvalidParameter(
            f"view {location.view} needs the old rows: `ALTER TABLE {where} REPLICA IDENTITY "
            "FULL;` (or choose view=NEW_IMAGE or KEYS_ONLY)"
        )
    return keys


def ensure_slot(conn: psycopg.Connection[Any], location: TableLocation, slot: str) -> bool:
    """Create the mapping's publication and slot unless they exist; True if the slot was new."""
    with pg_errors(f"replication slot {slot}"):
        exists = conn.execute(
            "SELECT 1 FROM pg_publication WHERE pubname = %s", (slot,)
        ).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}.{}").format(
                sql.Identifier(slot), sql.Identifier(location.schema),
                sql.Identifier(location.table),
            ))
        found = conn.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        if found is not None:
            return False
        try:
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        except psycopg.errors.DuplicateObject:  # created by another poller meanwhile
            return False
        return True


def prepare_table(uri: str, mapping_id: str) -> None:
    """At `mapping create`: check the server and table, then start the slot, so every change
    committed from now on is kept for the mapping even before a poller reads it."""
    location = TableLocation.parse(uri)
    conn = location.connect()
    try:
        with pg_errors(f"PostgreSQL table {location.qualified}"):
            check_table(conn, location)
        ensure_slot(conn, location, slot_name(mapping_id))
    finally:
        conn.close()


def drop_slot(uri: str, mapping_id: str) -> None:
    """At `mapping delete`: drop the slot (PostgreSQL then stops keeping WAL for it) and the
    publication."""
    location = TableLocation.parse(uri)
    slot = slot_name(mapping_id)
    conn = location.connect()
    try:
        with pg_errors(f"replication slot {slot}"):
            for attempt in range(_DROP_ATTEMPTS):
                # A peek in progress holds the slot for a moment: wait it out, briefly.
                try:
                    if conn.execute(
                        "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)
                    ).fetchone():
                        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    break
                except psycopg.errors.ObjectInUse:
                    if attempt == _DROP_ATTEMPTS - 1:
                        raise
                    time.sleep(0.2)
            conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(slot)))
    finally:
        conn.close()
