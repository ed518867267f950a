"""Event source mappings: their spec, Lambda's states, and the store that keeps them in Redis.

Keys (all under the settings prefix `p`):
    p:mappings                      set of mapping uuids
    p:mapping:<uuid>:spec           the MappingSpec as JSON
    p:mapping:<uuid>:stats          hash of counters (read, filtered, invoked, ...) and lag_s
    p:mapping:<uuid>:lease          the id of the poller running it (PX-expiring)
    p:mapping:<uuid>:attempts       hash record id -> failed invocations so far (survives pollers)
    p:mapping:<uuid>:...            the source's own checkpoints (broker_adapters/sources)
    p:pollers                       zset poller id -> heartbeat expiry (ms)

A transitional state (Creating, Enabling, Disabling, Updating, Deleting) is completed by the
poller that holds the mapping's lease; when no poller holds it, the store completes it at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Protocol

import orjson
import redis

from broker_adapters.sources.position import StartPosition
from warren.errors import InvalidParameter, NotFound, StoreUnavailable, WarrenError
from warren.filter import FilterCriteria, parse_pattern

ACTIVE = frozenset({"Creating", "Enabling", "Enabled", "Updating"})
STATES = ("Creating", "Enabling", "Enabled", "Disabling", "Disabled", "Updating", "Deleting")
DEFAULT_BATCH = {"stream": 100, "queue": 10, "s3": 10, "schedule": 1}
MAX_BATCH = 10_000
MAX_WINDOW_S = 300
STAT_FIELDS = ("read", "filtered", "invoked", "succeeded", "failed", "destination", "batches")
UPDATABLE = frozenset(
    {"function", "batch_size", "window_s", "filters", "report_item_failures", "bisect",
     "max_retries", "max_age_s", "on_failure", "max_concurrency", "parallelization_factor"}
)


def source_kind(uri: str) -> str:
    """The kind of source a URI names; InvalidParameter when it names none."""
    for scheme, kind in (("redis+stream://", "stream"), ("amqp://", "queue"), ("amqps://", "queue"),
                         ("s3://", "s3"), ("schedule:", "schedule")):
        if uri.startswith(scheme):
            return kind
    raise InvalidParameter(
        f"unknown source {uri!r}: use s3://bucket/prefix?endpoint=http://..., "
        "redis+stream://host:port/db/stream, amqp://user:pass@host:port/vhost/queue, "
        "schedule:rate(5 minutes) or schedule:cron(0 12 * * ? *)"
    )


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class MappingSpec:
    uuid: str
    function: str                      # NAME or NAME:QUALIFIER, as given
    source: str
    kind: str                          # stream | queue | s3 | schedule
    batch_size: int
    window_s: float = 0
    start_position: str = "trim-horizon"
    filters: tuple[str, ...] = ()
    report_item_failures: bool = False
    bisect: bool = False
    max_retries: int = -1              # -1: until the records expire (max_age)
    max_age_s: int = -1                # -1: no limit
    on_failure: str | None = None
    max_concurrency: int | None = None
    parallelization_factor: int = 1    # streams: batches in flight at once, ordered per key
    state: str = "Creating"
    state_reason: str = "User action"
    last_modified: str = field(default_factory=_now_iso)
    revision: int = 1

    @property
    def function_name(self) -> str:
        return self.function.split(":", 1)[0]

    @property
    def qualifier(self) -> str | None:
        return self.function.split(":", 1)[1] if ":" in self.function else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MappingSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["filters"] = tuple(known.get("filters", ()))
        return cls(**known)


def validate(spec: MappingSpec) -> MappingSpec:
    """Check every field against Lambda's ranges; returns the spec or raises InvalidParameter."""
    if not 1 <= spec.batch_size <= MAX_BATCH:
        raise InvalidParameter(f"--batch-size must be 1..{MAX_BATCH}, got {spec.batch_size}")
    if spec.kind == "schedule" and spec.batch_size != 1:
        raise InvalidParameter("a schedule delivers one event per tick: --batch-size must be 1")
    if not 0 <= spec.window_s <= MAX_WINDOW_S:
        raise InvalidParameter(f"--window must be 0..{MAX_WINDOW_S} seconds, got {spec.window_s}")
    if not (spec.max_retries == -1 or 0 <= spec.max_retries <= 10_000):
        raise InvalidParameter("--max-retries must be -1 (until expiry) or 0..10000")
    if not (spec.max_age_s == -1 or 60 <= spec.max_age_s <= 604_800):
        raise InvalidParameter("--max-age must be -1 (no limit) or 60..604800 seconds")
    if spec.max_concurrency is not None and not 2 <= spec.max_concurrency <= 1000:
        raise InvalidParameter("--max-concurrency must be 2..1000 (Lambda's MaximumConcurrency)")
    if not 1 <= spec.parallelization_factor <= 10:
        raise InvalidParameter(
            f"--parallelization-factor must be 1..10, got {spec.parallelization_factor}"
        )
    if spec.parallelization_factor != 1 and spec.kind != "stream":
        raise InvalidParameter("--parallelization-factor applies to streams only")
    if spec.on_failure is not None and not spec.on_failure.startswith(
        ("amqp:///", "redis+stream:///")
    ):
        raise InvalidParameter("--on-failure must be amqp:///QUEUE or redis+stream:///STREAM")
    StartPosition.parse(spec.start_position)
    for pattern in spec.filters:
        parse_pattern(pattern)
    FilterCriteria(spec.filters)
    return spec


class FunctionLookup(Protocol):
    def get_function(self, name: str, qualifier: str | None = None) -> Any: ...


class MappingStore:
    """Mappings in Redis: create/get/list/update/enable/disable/delete, counters, states."""

    def __init__(
        self, redis_client: redis.Redis[bytes], prefix: str = "warren",
        functions: FunctionLookup | None = None,
    ) -> None:
        self.redis = redis_client
        self.prefix = prefix
        self._functions = functions

    def key(self, mapping_id: str, part: str) -> str:
        return f"{self.prefix}:mapping:{mapping_id}:{part}"

    # -- user operations ------------------------------------------------------------------
    def create(self, *, function: str, source: str, batch_size: int | None = None,
               window_s: float = 0, start_position: str = "trim-horizon",
               filters: Sequence[str] = (), report_item_failures: bool = False,
               bisect: bool = False, max_retries: int = -1, max_age_s: int = -1,
               on_failure: str | None = None, max_concurrency: int | None = None,
               parallelization_factor: int = 1, enabled: bool = True) -> MappingSpec:
        kind = source_kind(source)
        self._check_function(function)
        spec = validate(MappingSpec(
            uuid=str(uuid.uuid4()), function=function, source=source, kind=kind,
            batch_size=batch_size if batch_size is not None else DEFAULT_BATCH[kind],
            window_s=window_s, start_position=start_position, filters=tuple(filters),
            report_item_failures=report_item_failures, bisect=bisect, max_retries=max_retries,
            max_age_s=max_age_s, on_failure=on_failure, max_concurrency=max_concurrency,
            parallelization_factor=parallelization_factor,
            state="Creating" if enabled else "Disabled",
        ))
        with self._guard():
            pipe = self.redis.pipeline()
            pipe.set(self.key(spec.uuid, "spec"), orjson.dumps(spec.to_dict()))
            pipe.sadd(f"{self.prefix}:mappings", spec.uuid)
            pipe.execute()
        if enabled and not self.live_pollers():
            return self.set_state(spec.uuid, "Enabled")
        return spec

    def get(self, mapping_id: str) -> MappingSpec:
        with self._guard():
            raw = self.redis.get(self.key(mapping_id, "spec"))
        if raw is None:
            raise NotFound(
                f"event source mapping {mapping_id!r} not found (see `warren mapping list`)"
            )
        return MappingSpec.from_dict(orjson.loads(raw))

    def list_mappings(self, function: str | None = None) -> list[MappingSpec]:
        with self._guard():
            ids = sorted(m.decode() for m in self.redis.smembers(f"{self.prefix}:mappings"))
            raws = self.redis.mget([self.key(i, "spec") for i in ids]) if ids else []
        specs = [MappingSpec.from_dict(orjson.loads(r)) for r in raws if r is not None]
        if function is not None:
            specs = [s for s in specs if s.function_name == function.split(":", 1)[0]]
        return specs

    def update(self, mapping_id: str, **changes: Any) -> MappingSpec:
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise InvalidParameter(
                f"cannot update {sorted(unknown)} (create a new mapping instead)"
            )
        spec = self.get(mapping_id)
        if spec.state == "Deleting":
            raise InvalidParameter(f"mapping {mapping_id} is being deleted")
        if "function" in changes:
            self._check_function(changes["function"])
        if "filters" in changes:
            changes["filters"] = tuple(changes["filters"])
        new = validate(replace(spec, **changes))
        state = "Updating" if spec.state in ACTIVE and self.held(mapping_id) else spec.state
        return self._save(replace(new, state=state, revision=spec.revision + 1))

    def enable(self, mapping_id: str) -> MappingSpec:
        spec = self.get(mapping_id)
        if spec.state in ACTIVE:
            return spec
        return self._transition(spec, "Enabling", "Enabled")

    def disable(self, mapping_id: str) -> MappingSpec:
        spec = self.get(mapping_id)
        if spec.state in ("Disabled", "Disabling", "Deleting"):
            return spec
        return self._transition(spec, "Disabling", "Disabled")

    def delete(self, mapping_id: str) -> MappingSpec:
        spec = self.get(mapping_id)
        if self.held(mapping_id):
            return self.set_state(mapping_id, "Deleting")
        self.purge(mapping_id)
        return replace(spec, state="Deleting")

    def stats(self, mapping_id: str) -> dict[str, Any]:
        with self._guard():
            raw = self.redis.hgetall(self.key(mapping_id, "stats"))
        values = {k.decode(): v.decode() for k, v in raw.items()}
        out: dict[str, Any] = {name: int(values.get(name, 0)) for name in STAT_FIELDS}
        lag = values.get("lag_s")
        out["lag_s"] = round(float(lag), 3) if lag not in (None, "") else None
        out["last_result"] = values.get("last_result", "No records processed")
        return out

    def summaries(self) -> list[dict[str, Any]]:
        """One row per mapping for `warren status`: id, function, source, state, counters, lag."""
        return [
            {"uuid": s.uuid, "function": s.function, "source": s.source, "state": s.state,
             **self.stats(s.uuid)}
            for s in self.list_mappings()
        ]

    # -- poller side ----------------------------------------------------------------------
    def set_state(self, mapping_id: str, state: str, reason: str = "User action") -> MappingSpec:
        spec = self.get(mapping_id)
        return self._save(replace(spec, state=state, state_reason=reason))

    def count(self, mapping_id: str, counts: Mapping[str, int], lag_s: float | None = None,
              last_result: str | None = None) -> None:
        with self._guard():
            pipe = self.redis.pipeline(transaction=False)
            key = self.key(mapping_id, "stats")
            for name, n in counts.items():
                if n:
                    pipe.hincrby(key, name, n)
            if lag_s is not None:
                pipe.hset(key, "lag_s", f"{lag_s:.3f}")
            if last_result:
                pipe.hset(key, "last_result", last_result)
            pipe.execute()

    def held(self, mapping_id: str) -> bool:
        with self._guard():
            return bool(self.redis.exists(self.key(mapping_id, "lease")))

    def live_pollers(self) -> list[str]:
        with self._guard():
            now_ms = int(time.time() * 1000)
            raw = self.redis.zrangebyscore(f"{self.prefix}:pollers", now_ms, "+inf")
        return [p.decode() for p in raw]

    def purge(self, mapping_id: str) -> None:
        """Forget a mapping and everything kept for it (checkpoints, a stream's group)."""
        from broker_adapters.sources import purge_source

        try:
            spec = self.get(mapping_id)
            purge_source(spec.source, mapping_id=mapping_id, redis=self.redis, prefix=self.prefix)
        except (WarrenError, redis.RedisError):  # gone already, stream absent or unreachable
            pass
        with self._guard():
            keys: Iterable[bytes] = self.redis.scan_iter(match=self.key(mapping_id, "*"), count=500)
            pipe = self.redis.pipeline()
            for key in keys:
                pipe.delete(key)
            pipe.srem(f"{self.prefix}:mappings", mapping_id)
            pipe.execute()

    # -- internals ------------------------------------------------------------------------
    def _transition(self, spec: MappingSpec, during: str, done: str) -> MappingSpec:
        if self.held(spec.uuid) or (done == "Enabled" and self.live_pollers()):
            return self.set_state(spec.uuid, during)
        return self.set_state(spec.uuid, done)

    def _save(self, spec: MappingSpec) -> MappingSpec:
        spec = replace(spec, last_modified=_now_iso())
        with self._guard():
            self.redis.set(self.key(spec.uuid, "spec"), orjson.dumps(spec.to_dict()))
        return spec

    def _check_function(self, function: str) -> None:
        name, _, qualifier = function.partition(":")
        if not name:
            raise InvalidParameter("--function needs NAME or NAME:QUALIFIER")
        if self._functions is not None:
            self._functions.get_function(name, qualifier or None)

    def _guard(self) -> _RedisGuard:
        return _RedisGuard(self.redis)


class _RedisGuard:
    """Turns redis-py's connection errors into StoreUnavailable, once, at this edge."""

    def __init__(self, client: redis.Redis[bytes]) -> None:
        self._client = client

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            kw = self._client.connection_pool.connection_kwargs
            where = f"redis://{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"
            raise StoreUnavailable(f"cannot reach Redis at {where}: {exc}") from None
