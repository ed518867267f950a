"""S3-compatible bucket source: new and overwritten objects become S3 notification records."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, quote_plus, unquote, urlsplit

import orjson
import redis

from warren.errors import ConfigError, InvalidParameter, NotFound, StoreUnavailable
from warren.mapping import StartPosition
from warren.source import SourceIdentity, SourceRecord
from warren.store.redis import redis_errors

_URI_HINT = (
    "a bucket source looks like s3://BUCKET/PREFIX?endpoint=http://HOST:9000&suffix=.jpg "
    "(endpoint, suffix, region and profile — a named AWS profile holding the bucket's own "
    "credentials — are optional)"
)
_HSET_CHUNK = 1000


@dataclass(frozen=True)
class BucketLocation:
    bucket: str
    prefix: str = ""
    suffix: str = ""
    endpoint: str | None = None
    region: str | None = None
    profile: str | None = None  # a named profile (AWS config files) with the bucket's credentials

    @classmethod
    def parse(cls, uri: str) -> BucketLocation:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise InvalidParameter(f"bad source {uri!r}: {_URI_HINT}")
        query = parse_qs(parts.query)
        unknown = set(query) - {"endpoint", "suffix", "region", "profile"}
        if unknown:
            raise InvalidParameter(f"bad source {uri!r}: unknown {sorted(unknown)}; {_URI_HINT}")
        endpoint = query.get("endpoint", [None])[-1]
        if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
            raise InvalidParameter(f"bad endpoint {endpoint!r} in {uri!r}: {_URI_HINT}")
        return cls(
            bucket=parts.netloc,
            prefix=unquote(parts.path[1:]),
            suffix=query.get("suffix", [""])[-1],
            endpoint=endpoint,
            region=query.get("region", [None])[-1],
            profile=query.get("profile", [None])[-1] or None,
        )

    def session(self) -> Any:
        """A boto3 session with the mapping's own credentials (its profile), or the poller's
        (its environment, instance role, default profile) when it names none."""
        try:
            import boto3
            from botocore.exceptions import ProfileNotFound
        except ImportError:
            raise ConfigError("the s3 source needs boto3: pip install 'warren[s3]'") from None
        try:
            return boto3.session.Session(profile_name=self.profile)
        except ProfileNotFound:
            raise InvalidParameter(
                f"the AWS profile {self.profile!r} of bucket source s3://{self.bucket} is not "
                "in this machine's AWS config files (aws configure --profile NAME, or set "
                "AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE for the poller)"
            ) from None

    def client(self, region: str) -> Any:
        from botocore.config import Config

        return self.session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region or region,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                s3={"addressing_style": "path"} if self.endpoint else {},
            ),
        )


@dataclass(frozen=True)
class _Object:
    key: str
    etag: str
    size: int
    modified: float  # epoch seconds
    before: str  # the key listed just before it: StartAfter value that lists it again

    @property
    def stamp(self) -> str:
        return f"{self.etag}|{int(self.modified * 1000)}"


def encode_key(key: str) -> str:
    """An object key as S3 puts it in notifications: form-encoded, space as "+"."""
    return quote_plus(key, safe="/")


@contextmanager
def _s3_errors(bucket: str) -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "404"):
            raise NotFound(f"bucket {bucket!r} does not exist") from exc
        raise StoreUnavailable(f"bucket {bucket!r}: {exc}") from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"bucket {bucket!r} is unreachable: {exc}") from exc


class BucketSource:
    """Polls a bucket prefix; what was handed on is checkpointed in Redis as key -> etag.

    Each poll lists in two ways so that a bucket of 100,000 objects is never re-read whole:
    a fast path lists only keys after the highest key seen (StartAfter), which finds new keys
    in key order at once; a rolling sweep lists `sweep_pages` pages from where the last poll
    left it, wrapping around, and finds overwrites and keys that sort below the fast path.
    Both compare each listed object's etag and LastModified with the checkpoint hash.
    """

    kind = "s3"
    ordered = False

    def __init__(
        self,
        client: Any,
        store: redis.Redis[Any],
        location: BucketLocation,
        identity: SourceIdentity,
        start: StartPosition,
        *,
        poll_interval_s: float = 1.0,
        sweep_pages: int = 1,
        fast_pages: int = 10,
        page_size: int = 1000,
    ) -> None:
        self._s3 = client
        self._store = store
        self._where = location
        self._identity = identity
        self._poll_interval_s = poll_interval_s
        self._sweep_pages = sweep_pages
        self._fast_pages = fast_pages
        self._page_size = page_size
        self._seen = identity.key("s3", "seen")
        self._cursor_key = identity.key("s3", "cursor")
        self._sweep_key = identity.key("s3", "sweep")
        self._queue: deque[_Object] = deque()
        self._waiting: set[str] = set()  # keys queued or in flight
        self._inflight: dict[str, _Object] = {}
        self._next_poll = 0.0
        with _s3_errors(location.bucket):
            self._s3.head_bucket(Bucket=location.bucket)
        with redis_errors("bucket checkpoint"):
            # LastModified has whole seconds: start one second early rather than miss one.
            store.set(identity.key("s3", "since"), math.floor(start.since()) - 1, nx=True)
            self._since = float(store.get(identity.key("s3", "since")) or 0)
            self._after = _text(store.get(self._cursor_key)) or ""
            self._sweep = _text(store.get(self._sweep_key)) or ""

    # -- the seam -------------------------------------------------------------------------

    def read(self, max_records: int, wait_s: float) -> list[SourceRecord]:
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            if not self._queue and time.monotonic() >= self._next_poll:
                self._next_poll = time.monotonic() + self._poll_interval_s
                with _s3_errors(self._where.bucket), redis_errors("bucket checkpoint"):
                    self._poll()
            if self._queue:
                return self._take(max_records)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            time.sleep(max(0.0, min(remaining, self._next_poll - time.monotonic())))

    def event(self, records: Sequence[SourceRecord]) -> dict[str, Any]:
        return {"Records": [r.record for r in records]}

    def encoded_event(self, records: Sequence[SourceRecord]) -> dict[str, Any]:
        return self.event(records)

    def commit(self, records: Sequence[SourceRecord]) -> None:
        found = [self._inflight.get(_key_of(r)) for r in records]
        objects = [o for o in found if o is not None]
        with redis_errors("bucket checkpoint"):
            pipe = self._store.pipeline(transaction=False)
            for i in range(0, len(objects), _HSET_CHUNK):
                chunk = objects[i : i + _HSET_CHUNK]
                pipe.hset(self._seen, mapping={o.key: o.stamp for o in chunk})
            for o in objects:  # the cursor must no longer wait for these
                self._inflight.pop(o.key, None)
            pipe.set(self._cursor_key, self._safe_cursor())
            try:
                pipe.execute()
            except BaseException:
                self._inflight.update((o.key, o) for o in objects)  # still in flight
                raise
        self._waiting.difference_update(o.key for o in objects)

    def retry(self, records: Sequence[SourceRecord]) -> None:
        for record in sorted(records, key=_key_of, reverse=True):
            obj = self._inflight.pop(_key_of(record), None)
            if obj is not None:
                self._queue.appendleft(obj)

    def lag_s(self) -> float | None:
        pending = [*self._queue, *self._inflight.values()]
        if not pending:
            return 0.0
        return max(0.0, time.time() - min(o.modified for o in pending))

    def close(self) -> None:
        close = getattr(self._s3, "close", None)
        if close is not None:
            close()

    # -- polling --------------------------------------------------------------------------

    def _poll(self) -> None:
        for _ in range(self._fast_pages):
            objects, last, truncated = self._list(self._after)
            self._consider(objects)
            self._after = last
            if not truncated:
                break
        for _ in range(self._sweep_pages):
            objects, last, truncated = self._list(self._sweep)
            self._consider([o for o in objects if o.key <= self._after])
            self._sweep = last if truncated else ""
            if not self._sweep:
                break
        pipe = self._store.pipeline(transaction=False)
        pipe.set(self._sweep_key, self._sweep)
        pipe.set(self._cursor_key, self._safe_cursor())
        pipe.execute()

    def _list(self, after: str) -> tuple[list[_Object], str, bool]:
        """One page after `after`: the objects the suffix selects, the last key listed (to
        continue from, selected or not) and whether more follow."""
        kwargs: dict[str, Any] = {
            "Bucket": self._where.bucket, "Prefix": self._where.prefix, "MaxKeys": self._page_size
        }
        if after:
            kwargs["StartAfter"] = after
        page = self._s3.list_objects_v2(**kwargs)
        objects: list[_Object] = []
        before = after
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith(self._where.suffix):
                objects.append(_Object(
                    key=key,
                    etag=item.get("ETag", "").strip('"'),
                    size=int(item.get("Size", 0)),
                    modified=item["LastModified"].timestamp(),
                    before=before,
                ))
            before = key
        return objects, before, bool(page.get("IsTruncated"))

    def _consider(self, objects: list[_Object]) -> None:
        fresh = [o for o in objects if o.key not in self._waiting and o.modified >= self._since]
        if not fresh:
            return
        stamps = self._store.hmget(self._seen, [o.key for o in fresh])
        for obj, stamp in zip(fresh, stamps, strict=True):
            if _text(stamp) != obj.stamp:
                self._queue.append(obj)
                self._waiting.add(obj.key)

    def _safe_cursor(self) -> str:
        """Where a restarted fast path must list from so that nothing outstanding is missed."""
        outstanding = [*self._queue, *self._inflight.values()]
        return min((o.before for o in outstanding), default=self._after)

    # -- records ----------------------------------------------------------------------------

    def _take(self, limit: int) -> list[SourceRecord]:
        count = min(limit, len(self._queue))
        with redis_errors("bucket checkpoint"):
            last = int(self._store.incrby(self._identity.key("s3", "seq"), count))
        taken = [self._queue.popleft() for _ in range(count)]
        out = []
        for n, obj in enumerate(taken, start=last - len(taken) + 1):
            self._inflight[obj.key] = obj
            out.append(self._record(obj, n))
        return out

    def _record(self, obj: _Object, n: int) -> SourceRecord:
        when = datetime.fromtimestamp(obj.modified, tz=timezone.utc)
        bucket = self._where.bucket
        record = {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": self._where.region or self._identity.region,
            "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "warren"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": f"{n:016X}", "x-amz-id-2": obj.stamp},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": f"warren-{self._identity.mapping_id}",
                "bucket": {
                    "name": bucket,
                    "ownerIdentity": {"principalId": "warren"},
                    "arn": f"arn:aws:s3:::{bucket}",
                },
                "object": {
                    "key": encode_key(obj.key),
                    "size": obj.size,
                    "eTag": obj.etag,
                    "sequencer": f"{int(obj.modified * 1000):012X}{n % 2**32:08X}",
                },
            },
        }
        data = orjson.dumps(record)
        return SourceRecord(
            id=f"{obj.key}@{obj.etag}", data=data, record=record, size=len(data),
            arrival=obj.modified,
        )


def _key_of(record: SourceRecord) -> str:
    return record.id.rpartition("@")[0]  # ids are "<key>@<etag>"; an etag has no "@"


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
