"""PostgreSQL table source: committed row changes through logical decoding, as DynamoDB records."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson

from broker_adapters.sources.dynamodb import RecordShaper
from broker_adapters.sources.pgoutput import Decoder, lsn_text, parse_lsn
from broker_adapters.sources.pgslot import (
    TableLocation,
    check_table,
    ensure_slot,
    pg_errors,
    slot_name,
)
from warren.source import SourceIdentity, SourceRecord, records_json

log = logging.getLogger("warren.sources")
_MAX_PEEK_ROWS = 1_000_000
_PEEK = (
    "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, %s::pg_lsn, %s,"
    " 'proto_version', '1', 'publication_names', %s)"
)


class _Pending:
    """A record read from the slot and not yet committed: where a checkpoint after it goes."""

    __slots__ = ("position", "commit_lsn", "end_lsn", "arrival")

    def __init__(self, position: int, commit_lsn: int, end_lsn: int, arrival: float) -> None:
        self.position = position
        self.commit_lsn = commit_lsn
        self.end_lsn = end_lsn
        self.arrival = arrival


class TableSource:
    """Reads one table's committed changes through the mapping's slot, in commit order.

    Changes are peeked (`pg_logical_slot_peek_binary_changes`, pgoutput) without consuming
    them; the slot is advanced (`pg_replication_slot_advance`, its confirmed flush LSN) only
    past whole transactions whose every change is committed here. A poller that dies leaves
    the slot where the last checkpoint put it: its successor re-reads from there. Records
    handed back by `retry` are offered again before anything newer.
    """

    kind = "table"
    ordered = True

    def __init__(
        self,
        location: TableLocation,
        identity: SourceIdentity,
        *,
        poll_interval_s: float = 0.02,
        peek_rows: int = 5000,
    ) -> None:
        self._location = location
        self._where = f"PostgreSQL table {location.qualified}"
        self._slot = slot_name(identity.mapping_id)
        self._poll_interval_s = poll_interval_s
        self._peek_rows = self._base_peek_rows = peek_rows
        self._conn = location.connect()
        try:
            with pg_errors(self._where):
                keys = check_table(self._conn, location)
                if ensure_slot(self._conn, location, self._slot):
                    log.warning("%s: created the missing replication slot %s; changes before "
                                "now are not delivered", self._where, self._slot)
                row = self._conn.execute(
                    "SELECT confirmed_flush_lsn::text FROM pg_replication_slots"
                    " WHERE slot_name = %s", (self._slot,)
                ).fetchone()
        except BaseException:
            self._conn.close()
            raise
        self._confirmed = parse_lsn(row[0]) if row and row[0] else 0
        arn = (f"arn:aws:dynamodb:{identity.region}:{identity.account}:table/"
               f"{location.qualified}/stream/{self._slot}")
        self._shaper = RecordShaper(keys, location.view, arn, identity.region)
        self._buffer: deque[SourceRecord] = deque()   # read from the slot, not handed out
        self._pending: deque[_Pending] = deque()      # read from the slot, not committed
        self._done: set[int] = set()                  # committed, not yet off _pending's front
        self._read_through = -1                       # position of the newest record read
        self._quiet_lsn = 0        # every change committed before it has been read
        self._safe_lsn = self._confirmed              # the slot may advance this far

    # -- the seam -------------------------------------------------------------------------

    def read(self, max_records: int, wait_s: float) -> list[SourceRecord]:
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            if self._buffer:
                count = min(max_records, len(self._buffer))
                return [self._buffer.popleft() for _ in range(count)]
            if self._fetch():
                continue
            self._checkpoint()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            time.sleep(min(self._poll_interval_s, remaining))

    def event(self, records: Sequence[SourceRecord]) -> dict[str, Any]:
        return {"Records": orjson.loads(records_json(records))}

    def encoded_event(self, records: Sequence[SourceRecord]) -> dict[str, Any]:
        return {"Records": orjson.Fragment(records_json(records))}

    def commit(self, records: Sequence[SourceRecord]) -> None:
        self._done.update(int(r.id) for r in records)
        pending, done = self._pending, self._done
        while pending and pending[0].position in done:
            first = pending.popleft()
            done.discard(first.position)
            if not pending or pending[0].commit_lsn != first.commit_lsn:
                self._safe_lsn = max(self._safe_lsn, first.end_lsn)
        self._checkpoint()

    def retry(self, records: Sequence[SourceRecord]) -> None:
        # Everything handed out precedes everything buffered: the retried go back in front.
        self._buffer.extendleft(sorted(records, key=lambda r: r.id, reverse=True))

    def lag_s(self) -> float | None:
        if not self._pending:
            return 0.0
        return max(0.0, time.time() - self._pending[0].arrival)

    def close(self) -> None:
        self._conn.close()

    # -- internals ------------------------------------------------------------------------

    def _fetch(self) -> bool:
        """Peek at the slot for changes newer than the last one read; True if any came."""
        limit = 2 * len(self._pending) + self._peek_rows
        with pg_errors(self._where):
            # The flush LSN, not the write LSN: decoding reads only flushed WAL, and a peek
            # that stopped short of `upto` must not let the slot advance past what it missed.
            row = self._conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
            upto = row[0] if row else None
            with self._conn.cursor(binary=True) as cursor:
                cursor.execute(_PEEK, (self._slot, upto, limit, self._slot))
                rows = cursor.fetchall()
        decoder = Decoder()
        shaper = self._shaper
        added = 0
        for (message,) in rows:
            txn = decoder.feed(bytes(message))
            if txn is None:
                continue
            base = txn.commit_lsn * 100_000_000  # int(SequenceNumber) of its first change
            for change in txn.changes:
                position = base + change.index
                if position <= self._read_through:
                    continue  # read before, still in flight or being retried
                sequence, raw = shaper.record(txn, change)
                self._read_through = position
                self._pending.append(
                    _Pending(position, txn.commit_lsn, txn.end_lsn, txn.commit_time_s)
                )
                self._buffer.append(SourceRecord(
                    sequence, raw, None, len(raw) + 1, txn.commit_time_s, json=raw
                ))
                added += 1
            if not txn.changes and not self._pending:
                self._safe_lsn = max(self._safe_lsn, txn.end_lsn)
        if len(rows) < limit and upto is not None:
            self._quiet_lsn = parse_lsn(upto)
            self._peek_rows = self._base_peek_rows
        elif not added:
            # A transaction larger than the limit sits in front: peek further next time.
            self._peek_rows = min(self._peek_rows * 2, _MAX_PEEK_ROWS)
        return added > 0

    def _checkpoint(self) -> None:
        """Advance the slot as far as every change before the target is committed."""
        target = self._safe_lsn
        if not self._pending and not self._buffer:
            target = max(target, self._quiet_lsn)
        if target <= self._confirmed:
            return
        with pg_errors(self._where):
            self._conn.execute(
                "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (self._slot, lsn_text(target))
            )
        self._confirmed = target
