"""Aliases: named pointers to a function's versions, kept as `alias:<A>` fields of its hash."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
import redis

from warren.errors import Conflict, InvalidParameter, NotFound
from warren.function import (
    LATEST,
    Alias,
    FunctionSpec,
    check_alias_name,
    check_function_name,
    check_weights,
    is_version,
)
from warren.store.redis import redis_errors

# One round trip for an alias: its record, then the specs of its version and weighted extra, in
# the order of its `weights` map (versions are immutable and never deleted alone, so they exist).
_TARGETS = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then
  return {false, redis.call('HEXISTS', KEYS[1], 'latest')}
end
local alias = cjson.decode(raw)
local function field(version)
  if version == '$LATEST' then return 'latest' end
  return 'v:' .. version
end
local out = {raw, redis.call('HGET', KEYS[1], field(alias.version))}
for version, _ in pairs(alias.weights) do
  table.insert(out, redis.call('HGET', KEYS[1], field(version)))
end
return out
"""


class AliasStore:
    """Create, repoint, read and delete aliases; each write is a transaction on the function."""

    def __init__(self, redis: redis.Redis[bytes], function_key: Callable[[str], str]) -> None:
        self._redis = redis
        self._key = function_key
        self._targets = redis.register_script(_TARGETS)

    def create(
        self,
        name: str,
        alias: str,
        version: str,
        weights: Mapping[str, float] | None = None,
        description: str = "",
    ) -> Alias:
        check_function_name(name)
        check_alias_name(alias)
        record = Alias(name, alias, str(version), check_weights(weights), description)

        def create(pipe: Any) -> None:
            if pipe.hexists(self._key(name), f"alias:{alias}"):
                raise Conflict(f"alias {alias} of {name} already exists: use `alias update`")
            self._check_targets(pipe, record)
            pipe.multi()
            pipe.hset(self._key(name), f"alias:{alias}", _dump(record))

        self._transaction(create, name)
        return record

    def update(
        self,
        name: str,
        alias: str,
        version: str | None = None,
        weights: Mapping[str, float] | None = None,
        description: str | None = None,
    ) -> Alias:
        """Repoint an alias; None leaves a field unchanged, `weights={}` drops the extra version."""
        check_function_name(name)
        check_alias_name(alias)
        result: list[Alias] = []

        def update(pipe: Any) -> None:
            current = self._read(pipe, name, alias)
            record = Alias(
                name,
                alias,
                current.version if version is None else str(version),
                current.weights if weights is None else check_weights(weights),
                current.description if description is None else description,
            )
            self._check_targets(pipe, record)
            pipe.multi()
            pipe.hset(self._key(name), f"alias:{alias}", _dump(record))
            result[:] = [record]

        self._transaction(update, name)
        return result[0]

    def get(self, name: str, alias: str) -> Alias:
        check_function_name(name)
        check_alias_name(alias)
        with redis_errors("aliases", self._redis):
            return self._read(self._redis, name, alias)

    def delete(self, name: str, alias: str) -> None:
        self.get(name, alias)
        with redis_errors("aliases", self._redis):
            self._redis.hdel(self._key(name), f"alias:{alias}")

    def all(self, name: str) -> list[Alias]:
        check_function_name(name)
        with redis_errors("aliases", self._redis):
            _require_function(self._redis, self._key(name), name)
            found = dict(self._redis.hscan_iter(self._key(name), match="alias:*", count=500))
        return [Alias.from_dict(orjson.loads(raw)) for _, raw in sorted(found.items())]

    def targets(
        self, name: str, alias: str
    ) -> tuple[Alias, FunctionSpec, list[tuple[FunctionSpec, float]]]:
        """The alias, its version's spec and its weighted extras, in one round trip."""
        check_function_name(name)
        check_alias_name(alias)
        with redis_errors("aliases", self._redis):
            reply = self._targets(keys=[self._key(name)], args=[f"alias:{alias}"])
        if reply[0] is None:
            if not reply[1]:
                raise NotFound(f"function {name} does not exist")
            raise NotFound(f"alias {alias} of function {name} does not exist")
        record = Alias.from_dict(orjson.loads(reply[0]))
        specs = [FunctionSpec.from_dict(orjson.loads(raw)) for raw in reply[1:]]
        return record, specs[0], list(zip(specs[1:], record.weights.values(), strict=True))

    def _transaction(self, body: Callable[[Any], None], name: str) -> None:
        def guarded(pipe: Any) -> None:
            _require_function(pipe, self._key(name), name)
            body(pipe)

        with redis_errors("aliases", self._redis):
            self._redis.transaction(guarded, self._key(name))  # type: ignore[no-untyped-call]

    def _read(self, conn: Any, name: str, alias: str) -> Alias:
        raw = conn.hget(self._key(name), f"alias:{alias}")
        if raw is None:
            _require_function(conn, self._key(name), name)
            raise NotFound(f"alias {alias} of function {name} does not exist")
        return Alias.from_dict(orjson.loads(raw))

    def _check_targets(self, conn: Any, record: Alias) -> None:
        key = self._key(record.function)
        for version in (record.version, *record.weights):
            if version != LATEST and not is_version(version):
                raise InvalidParameter(f"{version!r} is not a version: use $LATEST or a number")
            if version != LATEST and not conn.hexists(key, f"v:{version}"):
                raise NotFound(
                    f"version {version} of function {record.function} does not exist: "
                    "publish it first (`warren function publish`)"
                )
        if record.weights:
            (extra,) = record.weights
            if LATEST in (record.version, extra):
                raise InvalidParameter(
                    "a weighted alias needs two published versions: $LATEST cannot take weights"
                )
            if extra == record.version:
                raise InvalidParameter(
                    f"the weighted version {extra} must differ from the alias's version"
                )


def _require_function(conn: Any, key: str, name: str) -> None:
    if not conn.hexists(key, "latest"):
        raise NotFound(f"function {name} does not exist")


def _dump(record: Alias) -> bytes:
    return orjson.dumps(record.to_dict())
