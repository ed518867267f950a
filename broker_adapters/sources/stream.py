"""Redis stream source: one consumer group per mapping, records in Kinesis' shape."""

from __future__ import annotations

import binascii
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import redis

from broker_adapters.sources.kinesis import kinesis_template
from warren.errors import InvalidParameter, StoreUnavailable
from warren.mapping import StartPosition
from warren.source import SourceIdentity, SourceRecord, records_json
from warren.store.redis import redis_errors

_MAX_SEQ = 18446744073709551615  # the largest sequence part a stream entry id can have
_XACK_CHUNK = 5000
_KEY_CACHE = 65_536  # partition keys whose JSON text is remembered
_CLAIM_PAGE = 1000
_CLAIM_PAGES_PER_READ = 10
_MAX_BLOCK_MS = 30_000  # stays well under the client's socket timeout
_SOCKET_TIMEOUT_S = 60.0
_URI_HINT = (
    "a stream source looks like redis+stream://host:6379/0/STREAM (or redis+stream:///STREAM "
    "for Warren's own Redis)"
)


@dataclass(frozen=True)
class StreamLocation:
    stream: str
    host: str | None  # None: the Redis Warren itself uses
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, uri: str) -> StreamLocation:
        parts = urlsplit(uri)
        if parts.scheme not in ("redis+stream", "rediss+stream"):
            raise InvalidParameter(f"bad source {uri!r}: {_URI_HINT}")
        segments = [unquote(s) for s in parts.path.split("/")[1:]]
        try:
            port = parts.port or 6379
        except ValueError:
            raise InvalidParameter(f"bad port in {uri!r}: {_URI_HINT}") from None
        if len(segments) == 2 and segments[0].isdigit() and segments[1]:
            db, stream = int(segments[0]), segments[1]
        elif len(segments) == 1 and segments[0]:
            db, stream = 0, segments[0]
        else:
            raise InvalidParameter(f"bad source {uri!r}: {_URI_HINT}")
        return cls(
            stream=stream,
            host=parts.hostname or None,
            port=port,
            db=db,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=parts.scheme == "rediss+stream",
        )

    def client(self, fallback: redis.Redis[Any]) -> redis.Redis[Any]:
        """A binary-safe client of its own (XREADGROUP BLOCK holds a connection)."""
        if self.host is None:
            kwargs = dict(fallback.connection_pool.connection_kwargs)
            kwargs["decode_responses"] = False
            kwargs["socket_timeout"] = _SOCKET_TIMEOUT_S
            pool = redis.ConnectionPool(
                connection_class=fallback.connection_pool.connection_class, **kwargs
            )
            client = redis.Redis(connection_pool=pool)
        else:
            client = redis.Redis(
                host=self.host,
                port=self.port,
                db=self.db,
                username=self.username,
                password=self.password,
                ssl=self.tls,
                socket_connect_timeout=5,
                socket_timeout=_SOCKET_TIMEOUT_S,
            )
        # redis-py drops XAUTOCLAIM's cursor when JUSTID is given: keep the raw reply. Entries
        # of XREADGROUP stay flat field lists: `_record` reads the usual two shapes without a
        # dict per entry.
        for command in ("XAUTOCLAIM", "XREADGROUP"):
            client.set_response_callback(  # type: ignore[no-untyped-call]
                command, lambda response, **_: response
            )
        return client


def _parse_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _just_below(entry_id: str) -> str:
    """The id an exclusive XREADGROUP/XRANGE cursor needs so that `entry_id` is read again."""
    ms, seq = _parse_id(entry_id)
    if seq > 0:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-{_MAX_SEQ}" if ms > 0 else "0-0"


class StreamSource:
    """Reads a Redis stream through the consumer group `warren-<mapping_id>`.

    Order is kept: entries handed back by `retry`, and entries reclaimed from a dead consumer,
    are re-read from this consumer's pending list (lowest id first) before any new entry.
    """

    kind = "stream"
    ordered = True

    def __init__(
        self,
        client: redis.Redis[Any],
        location: StreamLocation,
        identity: SourceIdentity,
        start: StartPosition,
        *,
        claim_idle_s: float = 30.0,
        claim_every_s: float = 5.0,
    ) -> None:
        self._client = client
        self._stream = location.stream
        self._key = location.stream.encode()
        self._identity = identity
        self._group = f"warren-{identity.mapping_id}"
        self._consumer = identity.consumer
        self._start = start
        self._claim_idle_ms = int(claim_idle_s * 1000)
        self._claim_every_s = claim_every_s
        self._next_claim = 0.0
        self._claim_cursor = "0-0"
        self._first_claim = True
        self._inflight: set[str] = set()
        # Own pending entries are replayed from here (exclusive); None: nothing to replay.
        # "0-0" at start: entries a previous incarnation of this consumer left un-acked.
        self._replay_after: str | None = "0-0"
        arn = f"arn:aws:kinesis:{identity.region}:{identity.account}:stream/{location.stream}"
        role = f"arn:aws:iam::{identity.account}:role/warren-{identity.mapping_id}"
        self._template = kinesis_template(role, identity.region, arn)
        self._default_key = (self._stream, orjson.dumps(self._stream))
        self._keys: dict[bytes, tuple[str, bytes]] = {}
        self._stamp: tuple[bytes, float, bytes] = (b"", 0.0, b"")
        self._ensure_group()

    # -- the seam -------------------------------------------------------------------------

    def read(self, max_records: int, wait_s: float) -> list[SourceRecord]:
        out: list[SourceRecord] = []
        try:
            with redis_errors(f"stream {self._stream!r}"):
                self._maybe_claim()
                out = self._replay(max_records)
                if len(out) < max_records:
                    block = None if out or wait_s <= 0 else int(wait_s * 1000)
                    block = None if block is None else min(max(1, block), _MAX_BLOCK_MS)
                    out.extend(self._read_new(max_records - len(out), block))
        except StoreUnavailable:
            # Whatever this call took (or Redis handed over before the reply was lost) sits in
            # our pending list: replay all of it once Redis is back.
            self._inflight.difference_update(r.id for r in out)
            self._replay_after = "0-0"
            raise
        return out

    def event(self, records: Sequence[SourceRecord]) -> dict[str, Any]:
        # One parse of the whole list (a fresh copy: a handler may change it freely).
        return {"Records": orjson.loads(records_json(records))}

    def encoded_event(self, records: Sequence[SourceRecord]) -> dict[str, Any]:
        """`event(records)` with its record list already JSON (an `orjson.Fragment`): what an
        invoker that serialises with orjson sends, without building a dict per record."""
        return {"Records": orjson.Fragment(records_json(records))}

    def commit(self, records: Sequence[SourceRecord]) -> None:
        ids = [r.id for r in records]
        with redis_errors(f"stream {self._stream!r}"):
            if len(ids) <= _XACK_CHUNK:
                # One command, no pipeline object: the common case is one batch of ids.
                self._client.execute_command("XACK", self._key, self._group, *ids)
            else:
                pipe = self._client.pipeline(transaction=False)
                for i in range(0, len(ids), _XACK_CHUNK):
                    pipe.xack(self._key, self._group, *ids[i : i + _XACK_CHUNK])
                pipe.execute()
        self._inflight.difference_update(ids)

    def retry(self, records: Sequence[SourceRecord]) -> None:
        if not records:
            return
        self._inflight.difference_update(r.id for r in records)
        lowest = min((r.id for r in records), key=_parse_id)
        self._rewind(_just_below(lowest))

    def lag_s(self) -> float | None:
        with redis_errors(f"stream {self._stream!r}"):
            oldest: list[int] = []
            summary = self._client.xpending(self._key, self._group)  # type: ignore[no-untyped-call]
            if summary and summary.get("pending"):
                oldest.append(_parse_id(_text(summary["min"]))[0])
            groups = self._client.xinfo_groups(self._key)  # type: ignore[no-untyped-call]
            last = next(
                (_text(g["last-delivered-id"]) for g in groups if _text(g["name"]) == self._group),
                None,
            )
            if last is not None:
                after = self._client.xrange(self._key, min=f"({last}", count=1)
                if after:
                    oldest.append(_parse_id(_text(after[0][0]))[0])
        if not oldest:
            return 0.0
        return max(0.0, time.time() - min(oldest) / 1000.0)

    def close(self) -> None:
        self._client.close()

    # -- internals ------------------------------------------------------------------------

    def _ensure_group(self) -> None:
        if self._start.kind == "latest":
            start = "$"
        elif self._start.kind == "at-timestamp":
            start = _just_below(f"{int(self._start.since() * 1000)}-0")
        else:
            start = "0-0"
        with redis_errors(f"stream {self._stream!r}"):
            try:
                self._client.xgroup_create(self._key, self._group, id=start, mkstream=True)
            except redis.exceptions.ResponseError as exc:
                # BUSYGROUP: the group exists, and its checkpoint wins over the start position.
                if "BUSYGROUP" not in str(exc):
                    raise

    def _rewind(self, cursor: str) -> None:
        if self._replay_after is None or _parse_id(cursor) < _parse_id(self._replay_after):
            self._replay_after = cursor

    def _maybe_claim(self) -> None:
        """Move pending entries of dead consumers into ours, to be replayed in order.

        The first pass after opening takes every pending entry of the group whatever its idle
        time: a mapping is owned by one poller at a time, so whatever another consumer still
        holds was left by a previous owner. Later passes take only entries idle for longer
        than `claim_idle_s` (a zombie owner that read after losing its lease).
        """
        now = time.monotonic()
        if now < self._next_claim:
            return
        idle = 0 if self._first_claim else self._claim_idle_ms
        claimed = False
        for _ in range(_CLAIM_PAGES_PER_READ):
            reply = self._client.execute_command(
                "XAUTOCLAIM", self._key, self._group, self._consumer, idle,
                self._claim_cursor, "COUNT", _CLAIM_PAGE, "JUSTID",
            )
            self._claim_cursor = _text(reply[0])
            claimed = claimed or bool(reply[1])
            if self._claim_cursor == "0-0":
                self._first_claim = False
                self._next_claim = now + self._claim_every_s
                break
        if claimed:
            self._rewind("0-0")

    def _replay(self, limit: int) -> list[SourceRecord]:
        out: list[SourceRecord] = []
        deleted: list[bytes] = []
        page = max(limit, 100)
        while self._replay_after is not None and len(out) < limit:
            entries = _entries(self._xreadgroup(self._replay_after, page, None))
            consumed = 0
            for entry_id, fields in entries:
                if len(out) >= limit:
                    break
                consumed += 1
                sid = _text(entry_id)
                self._replay_after = sid
                if sid in self._inflight:
                    continue
                if not fields:  # trimmed or deleted while pending: nothing left to deliver
                    deleted.append(entry_id)
                    continue
                self._inflight.add(sid)
                out.append(self._record(entry_id, fields))
            if len(entries) < page and consumed == len(entries):
                self._replay_after = None
        if deleted:
            self._client.xack(self._key, self._group, *deleted)  # type: ignore[no-untyped-call]
        return out

    def _read_new(self, limit: int, block: int | None) -> list[SourceRecord]:
        record = self._record
        out = [record(i, f) for i, f in _entries(self._xreadgroup(">", limit, block))]
        self._inflight.update(r.id for r in out)
        return out

    def _xreadgroup(self, cursor: str, count: int, block: int | None) -> Any:
        try:
            return self._client.xreadgroup(
                self._group, self._consumer, {self._key: cursor}, count=count, block=block
            )
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream (and its group) was deleted under us: start over on the new one.
            self._ensure_group()
            return self._client.xreadgroup(
                self._group, self._consumer, {self._key: cursor}, count=count, block=block
            )

    def _record(self, entry_id: bytes | str, fields: Sequence[bytes]) -> SourceRecord:
        count = len(fields)
        if count == 2 and fields[0] == b"data":
            key, payload = None, fields[1]
        elif count == 4 and fields[0] == b"data" and fields[2] == b"partitionKey":
            key, payload = fields[3], fields[1]
        elif count == 4 and fields[0] == b"partitionKey" and fields[2] == b"data":
            key, payload = fields[1], fields[3]
        else:  # any other entry: a JSON object of its fields (the last of a repeated name)
            named = dict(zip(fields[::2], fields[1::2], strict=True))
            key = named.get(b"partitionKey")
            payload = orjson.dumps(
                {k.decode(errors="replace"): v.decode(errors="replace") for k, v in named.items()}
            )
        if key is None:
            partition, partition_json = self._default_key
        else:
            known = self._keys.get(key)
            if known is None:
                if len(self._keys) >= _KEY_CACHE:
                    self._keys.clear()
                text = key.decode(errors="replace")
                known = self._keys[key] = (text, orjson.dumps(text))
            partition, partition_json = known
        raw_id = entry_id if isinstance(entry_id, bytes) else entry_id.encode()
        ms = raw_id[: raw_id.index(b"-")]
        if ms != self._stamp[0]:  # entries written in the same millisecond share the text
            arrival = int(ms) / 1000.0
            self._stamp = (ms, arrival, orjson.dumps(arrival))
        _, arrival, arrival_json = self._stamp
        encoded = binascii.b2a_base64(payload, newline=False)
        raw = self._template % (partition_json, raw_id, encoded, arrival_json, raw_id)
        return SourceRecord(
            raw_id.decode(), payload, None, len(raw) + 1, arrival, partition=partition, json=raw
        )


def _entries(reply: Any) -> Any:
    """The [id, [field, value, ...]] entries of a raw XREADGROUP reply for one stream."""
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3: a map of stream name -> entries
        return next(iter(reply.values()))
    return reply[0][1]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
