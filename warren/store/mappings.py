"""The event source mapping store: mappings, their states and counters, in Warren's Redis.

Keys are warren.keys' `mapping(uuid, part)` (spec, stats, lease, attempts, the source's own
checkpoints), `mappings` and `pollers`. A transitional state (Creating, Enabling, Disabling,
Updating, Deleting) is completed by the poller that holds the mapping's lease; when no poller
holds it, the store completes it at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

import orjson
import redis

from warren.aws import iso_time
from warren.errors import InvalidParameter, NotFound, WarrenError
from warren.keys import Keys
from warren.mapping import (
    ACTIVE,
    DEFAULT_BATCH,
    STAT_FIELDS,
    UPDATABLE,
    MappingSpec,
    source_kind,
    validate,
)
from warren.store.redis import redis_errors

# Forgets a deleted mapping's checkpoints kept by its source (a stream's consumer group, ...):
# `purge(source_uri, mapping_id=..., redis=..., prefix=...)`, given by the composition root.
Purge = Callable[..., None]
# Checks a new mapping's source and makes it keep records for the mapping (a PostgreSQL slot,
# an MQTT session): `prepare(source_uri, mapping_id=...)`, given by the composition root.
Prepare = Callable[..., None]


class FunctionLookup(Protocol):
    def get_function(self, name: str, qualifier: str | None = None) -> Any: ...


class MappingStore:
    """Mappings in Redis: create/get/list/update/enable/disable/delete, counters, states."""

    def __init__(
        self, redis_client: redis.Redis[bytes], prefix: str = "warren",
        functions: FunctionLookup | None = None, purge: Purge | None = None,
        prepare: Prepare | None = None,
    ) -> None:
        self.redis = redis_client
        self.prefix = prefix
        self.keys = Keys(prefix)
        self._functions = functions
        self._purge = purge
        self._prepare = prepare

    def key(self, mapping_id: str, part: str) -> str:
        return self.keys.mapping(mapping_id, part)

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
        if self._prepare is not None:
            self._prepare(source, mapping_id=spec.uuid)
        try:
            with redis_errors("event source mappings", self.redis):
                pipe = self.redis.pipeline()
                pipe.set(self.key(spec.uuid, "spec"), orjson.dumps(spec.to_dict()))
                pipe.sadd(self.keys.mappings, spec.uuid)
                pipe.execute()
        except WarrenError:
            if self._purge is not None:  # no slot or session may outlive a failed create
                try:
                    self._purge(source, mapping_id=spec.uuid, redis=self.redis,
                                prefix=self.prefix)
                except WarrenError:  # Redis is down: the slot and session are gone already
                    pass
            raise
        if enabled and not self.live_pollers():
            return self.set_state(spec.uuid, "Enabled")
        return spec

    def get(self, mapping_id: str) -> MappingSpec:
        with redis_errors("event source mappings", self.redis):
            raw = self.redis.get(self.key(mapping_id, "spec"))
        if raw is None:
            raise NotFound(
                f"event source mapping {mapping_id!r} not found (see `warren mapping list`)"
            )
        return MappingSpec.from_dict(orjson.loads(raw))

    def list_mappings(self, function: str | None = None) -> list[MappingSpec]:
        with redis_errors("event source mappings", self.redis):
            ids = sorted(m.decode() for m in self.redis.smembers(self.keys.mappings))
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
        with redis_errors("event source mappings", self.redis):
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
        with redis_errors("event source mappings", self.redis):
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
        with redis_errors("event source mappings", self.redis):
            return bool(self.redis.exists(self.key(mapping_id, "lease")))

    def live_pollers(self) -> list[str]:
        with redis_errors("event source mappings", self.redis):
            now_ms = int(time.time() * 1000)
            raw = self.redis.zrangebyscore(self.keys.pollers, now_ms, "+inf")
        return [p.decode() for p in raw]

    def purge(self, mapping_id: str) -> None:
        """Forget a mapping and everything kept for it (checkpoints, a stream's group)."""
        if self._purge is not None:
            try:
                spec = self.get(mapping_id)
                with redis_errors("a deleted mapping's checkpoints"):
                    self._purge(
                        spec.source, mapping_id=mapping_id, redis=self.redis, prefix=self.prefix
                    )
            except WarrenError:  # gone already, stream absent or unreachable
                pass
        with redis_errors("event source mappings", self.redis):
            keys: Iterable[bytes] = self.redis.scan_iter(match=self.key(mapping_id, "*"), count=500)
            pipe = self.redis.pipeline()
            for key in keys:
                pipe.delete(key)
            pipe.srem(self.keys.mappings, mapping_id)
            pipe.execute()

    # -- internals ------------------------------------------------------------------------
    def _transition(self, spec: MappingSpec, during: str, done: str) -> MappingSpec:
        if self.held(spec.uuid) or (done == "Enabled" and self.live_pollers()):
            return self.set_state(spec.uuid, during)
        return self.set_state(spec.uuid, done)

    def _save(self, spec: MappingSpec) -> MappingSpec:
        spec = replace(spec, last_modified=iso_time())
        with redis_errors("event source mappings", self.redis):
            self.redis.set(self.key(spec.uuid, "spec"), orjson.dumps(spec.to_dict()))
        return spec

    def _check_function(self, function: str) -> None:
        name, _, qualifier = function.partition(":")
        if not name:
            raise InvalidParameter("--function needs NAME or NAME:QUALIFIER")
        if self._functions is not None:
            self._functions.get_function(name, qualifier or None)
