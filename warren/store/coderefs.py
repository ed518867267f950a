"""Which stored specs run which code bundle, so that a bundle nothing runs leaves Redis.

Bundles are content-addressed and shared: two functions (or two versions) with the same code
point at one `P:code:<sha256>`. Each bundle has a reference set:

    P:coderefs:<sha256>   SET     "<function>|<version>" of every stored spec that runs it (as its
                                  code or as one of its layers), "layer:<name>|<N>" of a layer
    P:coderefs            STRING  "1" once the sets were built from the specs stored before them

Every registry write that stores a spec adds its reference and makes the bundle persistent in
the same MULTI; every write that removes one (a code update, a delete) drops it with a Lua call
in that MULTI which, when the set becomes empty, gives the bundle `GRACE_S` more to live
instead of deleting it. A new bundle is stored with that TTL too, until the transaction that
references it commits. So a bundle an aborted create left behind goes away by itself, and a
create racing a delete of the same code never loses it: whichever of the two transactions
runs second wins (its PERSIST, or an expiry the later PERSIST cancels).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import redis

from warren.function import LATEST
from warren.keys import Keys

GRACE_S = 3600

DROP = """
redis.call('SREM', KEYS[1], ARGV[1])
if redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return 0
"""


class CodeRefs:
    def __init__(self, client: redis.Redis[bytes], prefix: str, code_key: Any) -> None:
        self._redis = client
        self._prefix = prefix
        self._code_key = code_key  # CodeStore.key
        self._built = False

    def key(self, sha256: str) -> str:
        return Keys(self._prefix).coderef(sha256)

    @property
    def marker_key(self) -> str:
        return Keys(self._prefix).coderefs

    def hold(self, pipe: Any, sha256: str, function: str, version: str) -> None:
        """Queue (in a MULTI): `function|version` runs bundle `sha256`, which must stay."""
        pipe.sadd(self.key(sha256), f"{function}|{version}")
        pipe.persist(self._code_key(sha256))

    def drop(self, pipe: Any, sha256: str, function: str, version: str) -> None:
        """Queue (in a MULTI): `function|version` no longer runs `sha256`; expire it if unused."""
        member = f"{function}|{version}"
        pipe.eval(DROP, 2, self.key(sha256), self._code_key(sha256), member, GRACE_S)

    def hold_spec(self, pipe: Any, spec: Any) -> None:
        """Queue (in a MULTI): hold every bundle a spec runs, its code and its layers'."""
        for sha256 in spec_shas(spec):
            self.hold(pipe, sha256, spec.name, spec.version)

    def swap(self, pipe: Any, old: Any, new: Any) -> None:
        """Queue (in a MULTI): the spec `old` of one version becomes `new`."""
        before, after = spec_shas(old), spec_shas(new)
        for sha256 in sorted(after - before):
            self.hold(pipe, sha256, new.name, new.version)
        for sha256 in sorted(before - after):
            self.drop(pipe, sha256, old.name, old.version)

    def ensure_built(self, functions_key: str, function_key: Any) -> None:
        """Build the reference sets once from every stored spec (those written before them).

        Only adds references, so running it twice or beside other writers is harmless; at worst
        a spec deleted meanwhile keeps its bundle (never the other way round).
        """
        if self._built:
            return
        if not self._redis.exists(self.marker_key):
            pipe = self._redis.pipeline(transaction=False)
            for raw_name in self._redis.smembers(functions_key):
                name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
                for version, sha256 in spec_codes(self._redis.hgetall(function_key(name))):
                    pipe.sadd(self.key(sha256), f"{name}|{version}")
            pipe.set(self.marker_key, "1")
            pipe.execute()
        self._built = True


def spec_codes(fields: dict[Any, Any]) -> Iterable[tuple[str, str]]:
    """(version, code sha256) of every spec in a function's hash ($LATEST and v:N)."""
    for raw_field, raw in fields.items():
        field = raw_field.decode() if isinstance(raw_field, bytes) else str(raw_field)
        if field == "latest":
            version = LATEST
        elif field.startswith("v:"):
            version = field[2:]
        else:
            continue
        body = orjson.loads(raw)
        # A spec holds its layers' bundles too: a deleted layer version still runs for it.
        shas = {body.get("code_sha256")} | {x["code_sha256"] for x in body.get("layers") or ()}
        for sha256 in sorted(s for s in shas if s):
            yield version, str(sha256)


def spec_shas(spec: Any) -> set[str]:
    """The bundles one FunctionSpec runs: its code and each of its layers."""
    return {spec.code_sha256, *(layer.code_sha256 for layer in spec.layers)} - {""}
