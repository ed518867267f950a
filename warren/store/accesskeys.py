"""The gateway's access keys in Redis: create (the secret shown once), list, delete, look up.

    <prefix>:accesskeys   HASH  access key id -> {"name", "secret", "created"} as JSON

SigV4 is an HMAC, so the verifier needs the secret itself: it is kept in Redis, which is the
fleet's trust boundary anyway (whoever reads it can also rewrite every function). Nothing but
`key create` ever prints it, and `list` never returns it.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
import redis
import redis.asyncio

from warren.errors import InvalidParameter, NotFound
from warren.keys import Keys
from warren.store.redis import redis_errors

ID_PREFIX = "AKWR"  # AWS's own ids start AKIA/ASIA; ours are recognisably Warren's
_ALPHABET = string.ascii_uppercase + string.digits
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
CACHE_S = 1.0  # a deleted key stops working within this long on every gateway


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    name: str
    created: str

    def to_dict(self) -> dict[str, Any]:
        return {"access_key_id": self.access_key_id, "name": self.name, "created": self.created}


def keys_key(prefix: str) -> str:
    return Keys(prefix).access_keys


class AccessKeys:
    """The CLI's side: create, list and delete keys (a sync Redis client)."""

    def __init__(self, client: redis.Redis[bytes], prefix: str = "warren") -> None:
        self._redis = client
        self.key = keys_key(prefix)

    def create(self, name: str) -> tuple[AccessKey, str]:
        """A new key and its secret; the secret is returned here and never again."""
        if not _NAME.fullmatch(name):
            raise InvalidParameter(
                f"key name {name!r} is invalid: use 1-64 letters, digits, '_', '.', '@' or '-'"
            )
        key_id = ID_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(16))
        secret = secrets.token_urlsafe(30)  # 40 characters, as AWS's secret keys
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        record = {"name": name, "secret": secret, "created": created}
        with redis_errors("access keys", self._redis):
            if not self._redis.hsetnx(self.key, key_id, orjson.dumps(record)):
                raise InvalidParameter("an access key id collided: try again")
        return AccessKey(key_id, name, created), secret

    def list(self) -> list[AccessKey]:
        with redis_errors("access keys", self._redis):
            raw = self._redis.hgetall(self.key)
        keys = []
        for key_id, value in raw.items():
            record = orjson.loads(value)
            keys.append(AccessKey(key_id.decode(), record["name"], record["created"]))
        return sorted(keys, key=lambda k: (k.created, k.access_key_id))

    def delete(self, key_id: str) -> None:
        with redis_errors("access keys", self._redis):
            if not self._redis.hdel(self.key, key_id):
                raise NotFound(f"access key {key_id} does not exist (see `warren key list`)")


class SecretLookup:
    """The gateway's side: a key's secret by id, cached for a second (async Redis)."""

    def __init__(self, client: redis.asyncio.Redis[bytes], prefix: str = "warren") -> None:
        self._redis = client
        self.key = keys_key(prefix)
        self._cache: dict[str, tuple[float, str | None]] = {}

    async def __call__(self, key_id: str) -> str | None:
        now = time.monotonic()
        hit = self._cache.get(key_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        with redis_errors("access keys", self._redis):  # type: ignore[arg-type]
            raw = await self._redis.hget(self.key, key_id)
        secret = None if raw is None else str(orjson.loads(raw)["secret"])
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key_id] = (now + CACHE_S, secret)
        return secret
