"""Layers in Redis: immutable numbered layer versions whose bundles are stored like function code.

    P:layers          SET   every layer name with at least one version
    P:layer:<name>    HASH  v:<N> -> LayerVersion JSON, next_version -> last number used

A layer version's zip is a code bundle (CodeStore: content-addressed, checked as hostile code
is). The version holds its bundle as "layer:<name>|<N>" in the bundle's reference set, and every
function spec using it holds it as "<function>|<version>" (CodeRefs), so deleting a layer
version removes it from the listings while the bundle stays for as long as a spec runs it.
Numbers are never reused, even after a delete (as on Lambda).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import redis

from warren.aws import iso_time
from warren.errors import NotFound
from warren.function import check_description
from warren.keys import Keys
from warren.layer import (
    LayerRef,
    LayerVersion,
    check_compatible_runtimes,
    check_layer_name,
    check_refs,
)
from warren.store.coderefs import CodeRefs
from warren.store.codes import CodeStore
from warren.store.redis import redis_errors


class LayerStore:
    """Publish, read, list and delete layer versions; resolve a function's `--layers`."""

    def __init__(self, client: redis.Redis[bytes], codes: CodeStore, prefix: str = "warren"):
        self._redis = client
        self._codes = codes
        self._keys = Keys(prefix)
        self.refs = CodeRefs(client, prefix, codes.key)

    def publish(
        self,
        name: str,
        code: Path,
        compatible_runtimes: Iterable[str] = (),
        description: str = "",
    ) -> LayerVersion:
        check_layer_name(name)
        runtimes = check_compatible_runtimes(compatible_runtimes)
        check_description(description)
        sha256, size = self._codes.put(Path(code))  # refuses what a hostile code bundle is refused
        key = self._keys.layer(name)
        result: list[LayerVersion] = []

        def publish(pipe: Any) -> None:
            number = int(pipe.hget(key, "next_version") or 0) + 1
            layer = LayerVersion(name, number, sha256, size, runtimes, description, iso_time())
            pipe.multi()
            pipe.hset(key, mapping={f"v:{number}": orjson.dumps(layer.to_dict()),
                                    "next_version": number})
            pipe.sadd(self._keys.layers, name)
            self.refs.hold(pipe, sha256, f"layer:{name}", str(number))
            result[:] = [layer]

        with redis_errors("layers", self._redis):
            self._redis.transaction(publish, key)  # type: ignore[no-untyped-call]
        return result[0]

    def get(self, name: str, version: int) -> LayerVersion:
        check_layer_name(name)
        with redis_errors("layers", self._redis):
            raw = self._redis.hget(self._keys.layer(name), f"v:{version}")
        if raw is None:
            raise NotFound(f"layer version {name}:{version} does not exist")
        return LayerVersion.from_dict(orjson.loads(raw))

    def versions(self, name: str) -> list[LayerVersion]:
        """Every live version of `name`, oldest first (Lambda's ListLayerVersions)."""
        check_layer_name(name)
        with redis_errors("layers", self._redis):
            fields = self._redis.hgetall(self._keys.layer(name))
        found = [
            LayerVersion.from_dict(orjson.loads(raw))
            for field, raw in fields.items()
            if field.startswith(b"v:")
        ]
        return sorted(found, key=lambda layer: layer.version)

    def latest(self) -> list[LayerVersion]:
        """The newest version of every layer (Lambda's ListLayers)."""
        with redis_errors("layers", self._redis):
            names = sorted(n.decode() for n in self._redis.smembers(self._keys.layers))
        newest = [self.versions(name) for name in names]
        return [versions[-1] for versions in newest if versions]

    def delete(self, name: str, version: int) -> None:
        """Remove a version from the listings; functions that use it keep running it."""
        check_layer_name(name)
        key = self._keys.layer(name)

        def delete(pipe: Any) -> None:
            raw = pipe.hget(key, f"v:{version}")
            if raw is None:
                raise NotFound(f"layer version {name}:{version} does not exist")
            sha256 = orjson.loads(raw)["code_sha256"]
            field = f"v:{version}".encode()
            others = [f for f in pipe.hkeys(key) if f.startswith(b"v:") and f != field]
            pipe.multi()
            pipe.hdel(key, f"v:{version}")
            if not others:
                pipe.srem(self._keys.layers, name)
            self.refs.drop(pipe, sha256, f"layer:{name}", str(version))

        with redis_errors("layers", self._redis):
            self._redis.transaction(delete, key)  # type: ignore[no-untyped-call]

    def resolve(self, refs: Iterable[str]) -> tuple[LayerRef, ...]:
        """A function's `--layers NAME:VERSION...`, in order, each one that exists now."""
        return tuple(self.get(name, version).ref() for name, version in check_refs(refs))
