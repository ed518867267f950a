"""The seam every event source sits behind: read a batch, shape it as AWS does, checkpoint.

Both rooms that meet here speak only this module: `broker_adapters.sources` implements
`Source`, `router.batching` drives it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import orjson

from warren.aws import ACCOUNT_ID, REGION
from warren.keys import Keys


class SourceRecord:
    """One record read from a source, in the AWS shape its handler will see.

    `id` is what a handler names in `batchItemFailures[].itemIdentifier`: the entry id for a
    stream (Kinesis' sequenceNumber), a stable message id for a queue, `"<key>@<etag>"` for a
    bucket, the tick's ISO time for a schedule. `data` is what filter criteria match on.
    `json`, when a source has it, is the record already serialised (the fleet path sends it as
    it is, and `record` is parsed from it only when something asks); `partition` is a stream
    record's partition key ("" elsewhere).

    A plain class with slots rather than a frozen dataclass: sources build tens of thousands of
    these a second, and a frozen dataclass' constructor costs four times as much.
    """

    __slots__ = ("id", "data", "_record", "size", "arrival", "partition", "json")

    def __init__(
        self,
        id: str,
        data: bytes,
        record: dict[str, Any] | None = None,
        size: int = 0,
        arrival: float = 0.0,
        *,
        partition: str = "",
        json: bytes | None = None,
    ) -> None:
        if record is None and json is None:
            raise ValueError("a SourceRecord needs its record or its JSON")
        self.id = id
        self.data = data
        self._record = record
        self.size = size
        self.arrival = arrival
        self.partition = partition
        self.json = json

    @property
    def record(self) -> dict[str, Any]:
        if self._record is None:
            assert self.json is not None
            self._record = orjson.loads(self.json)
        return self._record

    def encoded(self) -> bytes:
        """The record as JSON bytes."""
        return self.json if self.json is not None else orjson.dumps(self._record)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SourceRecord):
            return NotImplemented
        return (self.id, self.data, self.size, self.arrival, self.record) == (
            other.id, other.data, other.size, other.arrival, other.record
        )

    def __hash__(self) -> int:
        return hash((self.id, self.data, self.size, self.arrival))

    def __repr__(self) -> str:
        return f"SourceRecord(id={self.id!r}, size={self.size}, arrival={self.arrival})"


def records_json(records: Sequence[SourceRecord]) -> bytes:
    """A batch's records as one JSON array, reusing each record's own JSON where it has it."""
    return b"[" + b",".join([r.encoded() for r in records]) + b"]"


@runtime_checkable
class Source(Protocol):
    """A source of records for one event source mapping.

    Every record `read` returns stays in flight until the caller passes it to `commit` (done:
    checkpointed, never offered again) or `retry` (offered again by a later `read`, before any
    newer record of an ordered source). Records never committed are offered again after a
    restart: delivery is at-least-once.
    """

    kind: str
    ordered: bool

    def read(self, max_records: int, wait_s: float) -> list[SourceRecord]:
        """Up to `max_records` records; blocks up to `wait_s` for the first one."""
        ...

    def event(self, records: Sequence[SourceRecord]) -> dict[str, Any]:
        """The whole event for one batch, in the AWS shape."""
        ...

    def encoded_event(self, records: Sequence[SourceRecord]) -> dict[str, Any]:
        """`event(records)` for an invoker that serialises with orjson: record lists may be
        `orjson.Fragment`s of JSON already made, so no dict is built per record."""
        ...

    def commit(self, records: Sequence[SourceRecord]) -> None:
        """Durably checkpoint (ack) these records: they are done."""
        ...

    def retry(self, records: Sequence[SourceRecord]) -> None:
        """Hand these records back to be read again."""
        ...

    def lag_s(self) -> float | None:
        """Age in seconds of the oldest record not yet committed (iterator age), if known."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class LosesDeliveries(Protocol):
    """A source whose in-flight records die with their connection (the broker delivers them
    again on a new one): such records must be neither invoked nor acked any more."""

    def live(self, records: Sequence[SourceRecord]) -> list[SourceRecord]:
        """`records` without those whose connection is gone; those are forgotten here."""
        ...


@dataclass(frozen=True)
class SourceIdentity:
    """Who is reading and where the ARNs in the events claim to live."""

    mapping_id: str
    prefix: str
    consumer: str
    region: str = REGION
    account: str = ACCOUNT_ID

    @classmethod
    def from_options(
        cls, mapping_id: str, prefix: str, options: Mapping[str, Any]
    ) -> SourceIdentity:
        consumer = str(options.get("consumer") or f"{socket.gethostname()}-{os.getpid()}")
        return cls(
            mapping_id=mapping_id,
            prefix=prefix,
            consumer=consumer,
            region=str(options.get("region") or REGION),
            account=str(options.get("account") or ACCOUNT_ID),
        )

    def key(self, *parts: str) -> str:
        """A Redis key for this mapping's checkpoint state."""
        return Keys(self.prefix).mapping(self.mapping_id, *parts)
