"""The function registry in Redis: $LATEST, immutable versions, aliases and reserved concurrency.

Functions and versions live here; aliases in AliasStore and reservations in Reservations, both
reached through this facade.

Key layout (P = the prefix, `warren` unless WARREN_PREFIX says otherwise):

    P:functions          SET   every function name
    P:fn:<name>          HASH  latest -> spec JSON, v:<N> -> spec JSON, alias:<A> -> alias JSON,
                               next_version -> last number used, published -> fingerprint
    P:reservations       HASH  function name -> reserved concurrency
    P:code:<sha256>      STRING zip bytes (see CodeStore)
    P:coderefs:<sha256>  SET   "<name>|<version>" of the specs that run a bundle (see CodeRefs)
    P:layer:<name>       HASH  a layer's versions (see LayerStore)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import orjson
import redis

from warren.aws import iso_time
from warren.errors import Conflict, NotFound
from warren.function import (
    DEFAULT_POOL,
    LATEST,
    Alias,
    AsyncConfig,
    FunctionSpec,
    check_concurrency,
    check_function_name,
    is_version,
)
from warren.keys import Keys
from warren.settings import DEFAULT_ACCOUNT_CONCURRENCY
from warren.store.aliases import AliasStore
from warren.store.coderefs import CodeRefs, spec_codes
from warren.store.codes import CodeStore
from warren.store.layers import LayerStore
from warren.store.provisioned import ProvisionedStore
from warren.store.redis import redis_errors
from warren.store.reservations import Reservations

T = TypeVar("T")


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
        self.reserved = Reservations(redis, prefix, account_concurrency)
        self.aliases = AliasStore(redis, self.function_key)
        self.refs = CodeRefs(redis, prefix, codes.key)
        self.layers = LayerStore(redis, codes, prefix)
        self.provisioned = ProvisionedStore(redis, prefix, account_concurrency, self.get_function)
        self.reserved.provisioned_check = self.provisioned.check

    # ---- keys -------------------------------------------------------------------------------
    def function_key(self, name: str) -> str:
        return Keys(self.prefix).function(name)

    @property
    def functions_key(self) -> str:
        return Keys(self.prefix).functions

    @property
    def reservations_key(self) -> str:
        return self.reserved.key

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
        pool: str = DEFAULT_POOL, layers: Sequence[str] = (), network: str = "default",
        ephemeral_storage_mb: int = 512,
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
            last_modified=iso_time(zulu=False),
            pool=pool, layers=self.layers.resolve(layers), network=network,
            ephemeral_storage_mb=ephemeral_storage_mb,
        ).validate()
        check_concurrency(concurrency)
        with redis_errors("the registry", self._redis):  # refuse early, before storing any code
            if self._redis.hexists(self.function_key(name), "latest"):
                raise Conflict(f"function {name} already exists: use `function update`")
            if concurrency is not None:
                self.reserved.check(self._redis, name, concurrency)
        self._refs_built()
        sha256, size = self.codes.put(code)
        spec = replace(spec, code_sha256=sha256, code_size=size)

        def create(pipe: Any) -> None:
            if pipe.hexists(self.function_key(name), "latest"):
                raise Conflict(f"function {name} already exists: use `function update`")
            if concurrency is not None:
                self.reserved.check(pipe, name, concurrency)
            pipe.multi()
            pipe.hset(self.function_key(name), mapping={"latest": spec.dumps(), "next_version": 0})
            self.refs.hold_spec(pipe, spec)
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
        pool: str | None = None, layers: Sequence[str] | None = None,
        network: str | None = None, ephemeral_storage_mb: int | None = None,
    ) -> FunctionSpec:
        """Change $LATEST; None leaves a setting as it is, "" clears a destination, {} the env."""
        check_function_name(name)
        check_concurrency(concurrency)
        new_layers = None if layers is None else self.layers.resolve(layers)  # [] drops them all

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
                last_modified=iso_time(zulu=False),
                pool=_pick(pool, current.pool), layers=_pick(new_layers, current.layers),
                network=_pick(network, current.network),
                ephemeral_storage_mb=_pick(ephemeral_storage_mb, current.ephemeral_storage_mb),
            ).validate()

        changed(self._spec(name, None), None)  # refuse bad input before storing any code
        self._refs_built()
        code_ref = self.codes.put(code) if code is not None else None
        result: list[FunctionSpec] = []

        def update(pipe: Any) -> None:
            current = self._latest(pipe, name)
            spec = changed(current, code_ref)
            if concurrency is not None:
                self.reserved.check(pipe, name, concurrency)
            pipe.multi()
            pipe.hset(self.function_key(name), "latest", spec.dumps())
            self.refs.swap(pipe, current, spec)
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
        """An alias, its version's spec and its weighted extras, in one round trip."""
        return self.aliases.targets(name, alias)

    def list_functions(self) -> list[FunctionSpec]:
        with redis_errors("the registry", self._redis):
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
            fields = pipe.hgetall(self.function_key(name))
            if not any(k in (b"latest", "latest") for k in fields):
                raise NotFound(f"function {name} does not exist")
            provisioned = self.provisioned.of_function(pipe, name)
            pipe.multi()
            self.provisioned.forget(pipe, provisioned)
            pipe.delete(self.function_key(name))
            pipe.srem(self.functions_key, name)
            pipe.hdel(self.reservations_key, name)
            for version, sha256 in spec_codes(fields):
                self.refs.drop(pipe, sha256, name, version)

        self._refs_built()
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
                    f"v:{number + 1}": spec.dumps(),
                    "next_version": number + 1,
                    "published": latest.fingerprint(),
                },
            )
            self.refs.hold_spec(pipe, spec)
            result[:] = [spec]

        self._refs_built()
        self._transaction(publish, self.function_key(name))
        return result[0]

    # ---- aliases (see AliasStore) -----------------------------------------------------------
    def create_alias(self, name: str, alias: str, version: str,
                     weights: Mapping[str, float] | None = None, description: str = "") -> Alias:
        return self.aliases.create(name, alias, version, weights, description)

    def update_alias(self, name: str, alias: str, version: str | None = None,
                     weights: Mapping[str, float] | None = None,
                     description: str | None = None) -> Alias:
        """Repoint an alias; None leaves a field unchanged, `weights={}` drops the extra version."""
        return self.aliases.update(name, alias, version, weights, description)

    def get_alias(self, name: str, alias: str) -> Alias:
        return self.aliases.get(name, alias)

    def delete_alias(self, name: str, alias: str) -> None:
        self.aliases.delete(name, alias)

    def list_aliases(self, name: str) -> list[Alias]:
        return self.aliases.all(name)

    # ---- reserved concurrency ---------------------------------------------------------------
    def set_concurrency(self, name: str, n: int) -> None:
        """Reserve `n` executions for `name`: a guarantee and a hard ceiling (0 disables it)."""
        check_function_name(name)
        check_concurrency(n)

        def reserve(pipe: Any) -> None:
            self._latest(pipe, name)
            self.reserved.check(pipe, name, n)
            pipe.multi()
            pipe.hset(self.reservations_key, name, n)

        self._transaction(reserve, self.function_key(name), self.reservations_key)

    def clear_concurrency(self, name: str) -> None:
        check_function_name(name)
        with redis_errors("the registry", self._redis):
            if not self._redis.hexists(self.function_key(name), "latest"):
                raise NotFound(f"function {name} does not exist")
            self._redis.hdel(self.reservations_key, name)

    def get_concurrency(self, name: str) -> int | None:
        """The function's reservation, or None (also for an unknown function: one HGET)."""
        return self.reserved.get(name)

    def reservations(self) -> dict[str, int]:
        """Every reservation; the router carves their sum out of the account limit."""
        return self.reserved.all()

    # ---- internals --------------------------------------------------------------------------
    def _refs_built(self) -> None:
        with redis_errors("the registry", self._redis):
            self.refs.ensure_built(self.functions_key, self.function_key)

    def _transaction(self, body: Callable[[Any], None], *keys: str) -> None:
        with redis_errors("the registry", self._redis):
            self._redis.transaction(body, *keys)  # type: ignore[no-untyped-call]

    def _latest(self, conn: Any, name: str) -> FunctionSpec:
        raw = conn.hget(self.function_key(name), "latest")
        if raw is None:
            raise NotFound(f"function {name} does not exist")
        return FunctionSpec.from_dict(orjson.loads(raw))

    def _spec(self, name: str, version: str | None) -> FunctionSpec:
        check_function_name(name)
        field = "latest" if version in (None, LATEST) else f"v:{version}"
        with redis_errors("the registry", self._redis):
            raw = self._redis.hget(self.function_key(name), field)
            if raw is None and field != "latest":
                self._latest(self._redis, name)  # say which is missing: function or version
        if raw is None:
            if field == "latest":
                raise NotFound(f"function {name} does not exist")
            raise NotFound(f"version {version} of function {name} does not exist")
        return FunctionSpec.from_dict(orjson.loads(raw))

    def _fields(self, name: str) -> dict[str, bytes]:
        check_function_name(name)
        with redis_errors("the registry", self._redis):
            raw = self._redis.hgetall(self.function_key(name))
        if b"latest" not in raw:
            raise NotFound(f"function {name} does not exist")
        return {k.decode(): v for k, v in raw.items()}


def _pick(value: T | None, current: T) -> T:
    return current if value is None else value
