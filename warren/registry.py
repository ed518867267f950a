"""The function registry in Redis: $LATEST, immutable versions, aliases and reserved concurrency.

Key layout (P = the prefix, `warren` unless WARREN_PREFIX says otherwise):

    P:functions          SET   every function name
    P:fn:<name>          HASH  latest -> spec JSON, v:<N> -> spec JSON, alias:<A> -> alias JSON,
                               next_version -> last number used, published -> fingerprint
    P:reservations       HASH  function name -> reserved concurrency
    P:code:<sha256>      STRING zip bytes (see CodeStore)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import orjson
import redis

from warren.codestore import CodeStore, store_errors
from warren.errors import Conflict, InvalidParameter, NotFound
from warren.function import (
    LATEST,
    Alias,
    AsyncConfig,
    FunctionSpec,
    check_alias_name,
    check_concurrency,
    check_function_name,
    check_weights,
    is_version,
    now_iso,
)
from warren.settings import DEFAULT_ACCOUNT_CONCURRENCY

T = TypeVar("T")

# One round trip for an alias: its record, then the specs of its version and weighted extra, in
# the order of its `weights` map (versions are immutable and never deleted alone, so they exist).
_ALIAS_TARGETS = """
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
_UNSET: Any = object()


def unreserved_minimum(account_limit: int) -> int:
    """What must stay unreserved: Lambda's 100, or half (rounded up) of a smaller account."""
    return min(100, (account_limit + 1) // 2)


class Registry:
    """Functions, versions, aliases and reservations; every write is one atomic transaction."""

    def __init__(
        self,
        redis: redis.Redis[bytes],
        codes: CodeStore,
        prefix: str = "warren",
        *,
        account_concurrency: int = DEFAULT_ACCOUNT_CONCURRENCY,
    ) -> None:
        self._redis = redis
        self.codes = codes
        self.prefix = prefix
        self.account_concurrency = account_concurrency
        self._alias_script = redis.register_script(_ALIAS_TARGETS)

    # ---- keys -------------------------------------------------------------------------------
    def function_key(self, name: str) -> str:
        return f"{self.prefix}:fn:{name}"

    @property
    def functions_key(self) -> str:
        return f"{self.prefix}:functions"

    @property
    def reservations_key(self) -> str:
        return f"{self.prefix}:reservations"

    # ---- functions --------------------------------------------------------------------------
    def create_function(
        self,
        name: str,
        *,
        code: Path,
        handler: str,
        runtime: str = "python3.11",
        memory_mb: int = 128,
        timeout_s: int = 3,
        env: Mapping[str, str] | None = None,
        description: str = "",
        concurrency: int | None = None,
        max_retries: int = 2,
        max_event_age_s: int = 21600,
        on_success: str | None = None,
        on_failure: str | None = None,
    ) -> FunctionSpec:
        check_function_name(name)
        spec = FunctionSpec(
            name=name,
            handler=handler,
            runtime=runtime,
            memory_mb=memory_mb,
            timeout_s=timeout_s,
            env=dict(env or {}),
            description=description,
            code_sha256="",
            code_size=0,
            version=LATEST,
            async_config=AsyncConfig(max_retries, max_event_age_s, on_success or None,
                                     on_failure or None),
            last_modified=now_iso(),
        ).validate()
        check_concurrency(concurrency)
        with store_errors(self._redis):
            if self._redis.hexists(self.function_key(name), "latest"):
                raise Conflict(f"function {name} already exists: use `function update`")
        sha256, size = self.codes.put(code)
        spec = replace(spec, code_sha256=sha256, code_size=size)

        def create(pipe: Any) -> None:
            if pipe.hexists(self.function_key(name), "latest"):
                raise Conflict(f"function {name} already exists: use `function update`")
            if concurrency is not None:
                self._check_reservation(pipe, name, concurrency)
            pipe.multi()
            pipe.hset(self.function_key(name), mapping={"latest": _dump(spec), "next_version": 0})
            pipe.sadd(self.functions_key, name)
            if concurrency is not None:
                pipe.hset(self.reservations_key, name, concurrency)

        self._transaction(create, self.function_key(name), self.reservations_key)
        return spec

    def update_function(
        self,
        name: str,
        *,
        code: Path | None = None,
        handler: str | None = None,
        runtime: str | None = None,
        memory_mb: int | None = None,
        timeout_s: int | None = None,
        env: Mapping[str, str] | None = None,
        description: str | None = None,
        concurrency: int | None = None,
        max_retries: int | None = None,
        max_event_age_s: int | None = None,
        on_success: str | None = None,
        on_failure: str | None = None,
    ) -> FunctionSpec:
        """Change $LATEST; None leaves a setting as it is, "" clears a destination, {} the env."""
        check_function_name(name)
        check_concurrency(concurrency)

        def changed(current: FunctionSpec, code_ref: tuple[str, int] | None) -> FunctionSpec:
            conf = current.async_config
            return replace(
                current,
                handler=_pick(handler, current.handler),
                runtime=_pick(runtime, current.runtime),
                memory_mb=_pick(memory_mb, current.memory_mb),
                timeout_s=_pick(timeout_s, current.timeout_s),
                env=dict(env) if env is not None else current.env,
                description=_pick(description, current.description),
                code_sha256=code_ref[0] if code_ref else current.code_sha256,
                code_size=code_ref[1] if code_ref else current.code_size,
                async_config=AsyncConfig(
                    max_retries=_pick(max_retries, conf.max_retries),
                    max_event_age_s=_pick(max_event_age_s, conf.max_event_age_s),
                    on_success=conf.on_success if on_success is None else (on_success or None),
                    on_failure=conf.on_failure if on_failure is None else (on_failure or None),
                ),
                last_modified=now_iso(),
            ).validate()

        changed(self._spec(name, None), None)  # refuse bad input before storing any code
        code_ref = self.codes.put(code) if code is not None else None
        result: list[FunctionSpec] = []

        def update(pipe: Any) -> None:
            spec = changed(self._latest(pipe, name), code_ref)
            if concurrency is not None:
                self._check_reservation(pipe, name, concurrency)
            pipe.multi()
            pipe.hset(self.function_key(name), "latest", _dump(spec))
            if concurrency is not None:
                pipe.hset(self.reservations_key, name, concurrency)
            result[:] = [spec]

        self._transaction(update, self.function_key(name), self.reservations_key)
        return result[0]

    def get_function(self, name: str, qualifier: str | None = None) -> FunctionSpec:
        """The spec for `$LATEST` (no qualifier), a version, or an alias's primary version."""
        if qualifier is None or qualifier == LATEST or is_version(qualifier):
            return self._spec(name, qualifier)
        return self.alias_targets(name, qualifier)[1]

    def resolve(
        self, name: str, qualifier: str | None = None, rng: random.Random | None = None
    ) -> FunctionSpec:
        """What one invocation runs: like get_function, but an alias's weights pick the version."""
        if qualifier is None or qualifier == LATEST or is_version(qualifier):
            return self._spec(name, qualifier)
        _, primary, extras = self.alias_targets(name, qualifier)
        draw = rng.random if rng is not None else random.random
        for spec, weight in extras:
            if draw() < weight:
                return spec
        return primary

    def alias_targets(
        self, name: str, alias: str
    ) -> tuple[Alias, FunctionSpec, list[tuple[FunctionSpec, float]]]:
        """An alias, its primary version's spec and its weighted extras, in one round trip."""
        check_function_name(name)
        check_alias_name(alias)
        with store_errors(self._redis):
            reply = self._alias_script(keys=[self.function_key(name)], args=[f"alias:{alias}"])
        if reply[0] is None:
            if not reply[1]:
                raise NotFound(f"function {name} does not exist")
            raise NotFound(f"alias {alias} of function {name} does not exist")
        record = Alias.from_dict(orjson.loads(reply[0]))
        specs = [FunctionSpec.from_dict(orjson.loads(raw)) for raw in reply[1:]]
        return record, specs[0], list(zip(specs[1:], record.weights.values(), strict=True))

    def list_functions(self) -> list[FunctionSpec]:
        with store_errors(self._redis):
            names = sorted(n.decode() for n in self._redis.smembers(self.functions_key))
            pipe = self._redis.pipeline(transaction=False)
            for name in names:
                pipe.hget(self.function_key(name), "latest")
            raw = pipe.execute()
        return [FunctionSpec.from_dict(orjson.loads(r)) for r in raw if r is not None]

    def list_versions(self, name: str) -> list[FunctionSpec]:
        """$LATEST, then every published version in order (Lambda's ListVersionsByFunction)."""
        fields = self._fields(name)
        versions = sorted((int(k[2:]), v) for k, v in fields.items() if k.startswith("v:"))
        return [FunctionSpec.from_dict(orjson.loads(fields["latest"]))] + [
            FunctionSpec.from_dict(orjson.loads(raw)) for _, raw in versions
        ]

    def delete_function(self, name: str) -> None:
        """Delete the function with all its versions, aliases and its reservation."""
        check_function_name(name)

        def delete(pipe: Any) -> None:
            if not pipe.hexists(self.function_key(name), "latest"):
                raise NotFound(f"function {name} does not exist")
            pipe.multi()
            pipe.delete(self.function_key(name))
            pipe.srem(self.functions_key, name)
            pipe.hdel(self.reservations_key, name)

        self._transaction(delete, self.function_key(name))

    def publish_version(self, name: str, description: str = "") -> FunctionSpec:
        """Snapshot $LATEST as the next version; if nothing changed since, return the last one."""
        check_function_name(name)
        result: list[FunctionSpec] = []

        def publish(pipe: Any) -> None:
            latest = self._latest(pipe, name)
            published, last = pipe.hmget(self.function_key(name), "published", "next_version")
            number = int(last or 0)
            if published is not None and published == latest.fingerprint() and number:
                raw = pipe.hget(self.function_key(name), f"v:{number}")
                result[:] = [FunctionSpec.from_dict(orjson.loads(raw))]
                return
            spec = latest.as_version(str(number + 1), description or None)
            pipe.multi()
            pipe.hset(
                self.function_key(name),
                mapping={
                    f"v:{number + 1}": _dump(spec),
                    "next_version": number + 1,
                    "published": latest.fingerprint(),
                },
            )
            result[:] = [spec]

        self._transaction(publish, self.function_key(name))
        return result[0]

    # ---- aliases ----------------------------------------------------------------------------
    def create_alias(
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
            self._latest(pipe, name)
            if pipe.hexists(self.function_key(name), f"alias:{alias}"):
                raise Conflict(f"alias {alias} of {name} already exists: use `alias update`")
            self._check_alias_targets(pipe, record)
            pipe.multi()
            pipe.hset(self.function_key(name), f"alias:{alias}", _dump(record))

        self._transaction(create, self.function_key(name))
        return record

    def update_alias(
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
            current = self._alias(pipe, name, alias)
            record = Alias(
                name,
                alias,
                _pick(None if version is None else str(version), current.version),
                current.weights if weights is None else check_weights(weights),
                _pick(description, current.description),
            )
            self._check_alias_targets(pipe, record)
            pipe.multi()
            pipe.hset(self.function_key(name), f"alias:{alias}", _dump(record))
            result[:] = [record]

        self._transaction(update, self.function_key(name))
        return result[0]

    def get_alias(self, name: str, alias: str) -> Alias:
        check_function_name(name)
        check_alias_name(alias)
        with store_errors(self._redis):
            return self._alias(self._redis, name, alias)

    def delete_alias(self, name: str, alias: str) -> None:
        self.get_alias(name, alias)
        with store_errors(self._redis):
            self._redis.hdel(self.function_key(name), f"alias:{alias}")

    def list_aliases(self, name: str) -> list[Alias]:
        fields = self._fields(name)
        return [
            Alias.from_dict(orjson.loads(raw))
            for key, raw in sorted(fields.items())
            if key.startswith("alias:")
        ]

    # ---- reserved concurrency ---------------------------------------------------------------
    def set_concurrency(self, name: str, n: int) -> None:
        """Reserve `n` executions for `name`: a guarantee and a hard ceiling (0 disables it)."""
        check_function_name(name)
        check_concurrency(n)

        def reserve(pipe: Any) -> None:
            self._latest(pipe, name)
            self._check_reservation(pipe, name, n)
            pipe.multi()
            pipe.hset(self.reservations_key, name, n)

        self._transaction(reserve, self.function_key(name), self.reservations_key)

    def clear_concurrency(self, name: str) -> None:
        check_function_name(name)
        with store_errors(self._redis):
            if not self._redis.hexists(self.function_key(name), "latest"):
                raise NotFound(f"function {name} does not exist")
            self._redis.hdel(self.reservations_key, name)

    def get_concurrency(self, name: str) -> int | None:
        """The function's reservation, or None when it shares the unreserved pool."""
        with store_errors(self._redis):
            raw = self._redis.hget(self.reservations_key, name)
        return None if raw is None else int(raw)

    def reservations(self) -> dict[str, int]:
        """Every reservation; the router carves their sum out of the account limit."""
        with store_errors(self._redis):
            raw = self._redis.hgetall(self.reservations_key)
        return {k.decode(): int(v) for k, v in raw.items()}

    # ---- internals --------------------------------------------------------------------------
    def _transaction(self, body: Callable[[Any], None], *keys: str) -> None:
        with store_errors(self._redis):
            self._redis.transaction(body, *keys)  # type: ignore[no-untyped-call]

    def _latest(self, conn: Any, name: str) -> FunctionSpec:
        raw = conn.hget(self.function_key(name), "latest")
        if raw is None:
            raise NotFound(f"function {name} does not exist")
        return FunctionSpec.from_dict(orjson.loads(raw))

    def _spec(self, name: str, version: str | None) -> FunctionSpec:
        check_function_name(name)
        field = "latest" if version in (None, LATEST) else f"v:{version}"
        with store_errors(self._redis):
            raw = self._redis.hget(self.function_key(name), field)
            if raw is None and field != "latest":
                self._latest(self._redis, name)  # say which is missing: function or version
        if raw is None:
            if field == "latest":
                raise NotFound(f"function {name} does not exist")
            raise NotFound(f"version {version} of function {name} does not exist")
        return FunctionSpec.from_dict(orjson.loads(raw))

    def _alias(self, conn: Any, name: str, alias: str) -> Alias:
        raw = conn.hget(self.function_key(name), f"alias:{alias}")
        if raw is None:
            self._latest(conn, name)
            raise NotFound(f"alias {alias} of function {name} does not exist")
        return Alias.from_dict(orjson.loads(raw))

    def _fields(self, name: str) -> dict[str, bytes]:
        check_function_name(name)
        with store_errors(self._redis):
            raw = self._redis.hgetall(self.function_key(name))
        if b"latest" not in raw:
            raise NotFound(f"function {name} does not exist")
        return {k.decode(): v for k, v in raw.items()}

    def _check_alias_targets(self, conn: Any, record: Alias) -> None:
        key = self.function_key(record.function)
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

    def _check_reservation(self, conn: Any, name: str, n: int) -> None:
        current = {k.decode(): int(v) for k, v in conn.hgetall(self.reservations_key).items()}
        others = sum(v for k, v in current.items() if k != name)
        keep = unreserved_minimum(self.account_concurrency)
        available = self.account_concurrency - keep - others
        if n > available:
            raise InvalidParameter(
                f"cannot reserve {n} for {name}: the account limit is {self.account_concurrency}, "
                f"{keep} must stay unreserved and other functions reserve {others}; "
                f"at most {max(available, 0)} is available"
            )


def _dump(obj: FunctionSpec | Alias) -> bytes:
    return orjson.dumps(obj.to_dict())


def _pick(value: T | None, current: T) -> T:
    return current if value is None else value
