"""Provisioned concurrency configs and the workers' reports of them, in Redis.

    P:provisioned               HASH  "<function>:<qualifier>" -> ProvisionedConfig JSON
    P:provisioned:worker:<id>   HASH  "<function>:<qualifier>" -> that worker's Allocation JSON,
                                      expiring unless the worker keeps writing it

Provisioned sandboxes count against the function's concurrency: the sum over a function's
configs may not pass its reservation, and a function without one may not take the account's
unreserved pool below its minimum (Lambda's rules).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
import redis

from warren.aws import iso_time
from warren.errors import InvalidParameter, NotFound
from warren.function import DEFAULT_POOL
from warren.keys import Keys
from warren.provisioned import (
    Allocation,
    ProvisionedConfig,
    check_count,
    check_target,
    summarise,
)
from warren.store.redis import redis_errors
from warren.store.reservations import unreserved_minimum


class ProvisionedStore:
    """Configs (put, get, all, delete) under the rules; the workers' reports and the fleet view."""

    def __init__(
        self,
        client: redis.Redis[bytes],
        prefix: str,
        account_concurrency: int,
        resolve: Callable[[str, str | None], Any],
    ) -> None:
        self._redis = client
        self._keys = Keys(prefix)
        self.key = self._keys.provisioned
        self.account_concurrency = account_concurrency
        self._resolve = resolve  # Registry.get_function: NotFound for a missing qualifier

    def put(self, function: str, qualifier: str | None, n: int) -> ProvisionedConfig:
        function, qualifier = check_target(function, qualifier)
        check_count(n)
        self._resolve(function, qualifier)
        config = ProvisionedConfig(function, qualifier, n, iso_time())

        def put(pipe: Any) -> None:
            self.check(pipe, pipe.hgetall(self._keys.reservations), {config.key: config})
            pipe.multi()
            pipe.hset(self.key, config.key, orjson.dumps(config.to_dict()))

        with redis_errors("provisioned concurrency", self._redis):
            watched = (self.key, self._keys.reservations)
            self._redis.transaction(put, *watched)  # type: ignore[no-untyped-call]
        return config

    def check(
        self, conn: Any, raw_reserved: Mapping[Any, Any], change: Mapping[str, ProvisionedConfig]
    ) -> None:
        """Refuse configs (current ones with `change` applied) the concurrency rules forbid."""
        reserved = {_text(k): int(v) for k, v in raw_reserved.items()}
        configs = {c.key: c for c in _configs(conn.hgetall(self.key))}
        configs.update(change)
        by_function: dict[str, int] = {}
        for config in configs.values():
            by_function[config.function] = by_function.get(config.function, 0) + config.requested
        for function, total in sorted(by_function.items()):
            limit = reserved.get(function)
            if limit is not None and total > limit:
                raise InvalidParameter(
                    f"{function} would have {total} provisioned but its reserved concurrency is "
                    f"{limit}: provisioned concurrency may not exceed it"
                )
        unreserved = sum(t for f, t in by_function.items() if f not in reserved)
        room = (self.account_concurrency - sum(reserved.values())
                - unreserved_minimum(self.account_concurrency))
        if unreserved > room:
            raise InvalidParameter(
                f"functions without reserved concurrency would have {unreserved} provisioned, "
                f"but only {max(room, 0)} of the account's unreserved "
                f"{self.account_concurrency - sum(reserved.values())} may be: "
                f"{unreserved_minimum(self.account_concurrency)} must stay available"
            )

    def delete(self, function: str, qualifier: str | None) -> None:
        function, qualifier = check_target(function, qualifier)
        with redis_errors("provisioned concurrency", self._redis):
            if not self._redis.hdel(self.key, f"{function}:{qualifier}"):
                raise NotFound(f"{function}:{qualifier} has no provisioned concurrency")

    def get(self, function: str, qualifier: str) -> ProvisionedConfig | None:
        with redis_errors("provisioned concurrency", self._redis):
            raw = self._redis.hget(self.key, f"{function}:{qualifier}")
        return None if raw is None else ProvisionedConfig.from_dict(orjson.loads(raw))

    def all(self) -> list[ProvisionedConfig]:
        with redis_errors("provisioned concurrency", self._redis):
            raw = self._redis.hgetall(self.key)
        return sorted(_configs(raw), key=lambda c: c.key)

    def of_function(self, conn: Any, function: str) -> list[bytes]:
        """The fields of `function`'s configs (read before a MULTI that forgets them)."""
        return [k for k in conn.hkeys(self.key) if _text(k).split(":")[0] == function]

    def forget(self, pipe: Any, fields: list[bytes]) -> None:
        if fields:
            pipe.hdel(self.key, *fields)

    # ---- the workers' side --------------------------------------------------------------------
    def report(self, worker_id: str, allocations: Mapping[str, Allocation], ttl_s: int) -> None:
        """One worker's allocations, replacing its last report; gone `ttl_s` after its last."""
        key = self._keys.provisioned_status(worker_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(key)
        if allocations:
            pipe.hset(key, mapping={k: orjson.dumps(a.to_dict()) for k, a in allocations.items()})
            pipe.expire(key, ttl_s)
        with redis_errors("provisioned concurrency", self._redis):
            pipe.execute()

    def status(
        self, configs: Iterable[ProvisionedConfig], pool_of: Callable[[str], str]
    ) -> list[dict[str, Any]]:
        """Each config's fleet view, from the live workers' reports."""
        with redis_errors("provisioned concurrency", self._redis):
            pools: dict[str, int] = {}
            for key in self._redis.scan_iter(self._keys.workers_pattern):
                pool = _text(self._redis.hget(key, "pool") or DEFAULT_POOL)
                pools[pool] = pools.get(pool, 0) + 1
            reports: dict[str, list[Allocation]] = {}
            for key in self._redis.scan_iter(self._keys.provisioned_status("*")):
                for field, raw in self._redis.hgetall(key).items():
                    reports.setdefault(_text(field), []).append(
                        Allocation.from_dict(orjson.loads(raw))
                    )
        views = []
        for config in configs:
            pool = pool_of(config.function)
            views.append(summarise(config, reports.get(config.key, []), pools.get(pool, 0), pool))
        return views


def _configs(raw: Mapping[Any, Any]) -> list[ProvisionedConfig]:
    return [ProvisionedConfig.from_dict(orjson.loads(v)) for v in raw.values()]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
