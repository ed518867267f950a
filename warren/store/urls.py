"""Function URL configs in Redis: one URL per function and qualifier, found by its id.

    <prefix>:urls     HASH  url id -> UrlConfig as JSON
    <prefix>:urlof    HASH  "<function>|<qualifier or ''>" -> url id
"""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import orjson
import redis
import redis.asyncio

from warren.errors import Conflict, InvalidParameter, NotFound
from warren.keys import Keys
from warren.store.redis import redis_errors

AUTH_TYPES = ("NONE", "AWS_IAM")
CORS_FIELDS = ("AllowCredentials", "AllowHeaders", "AllowMethods", "AllowOrigins",
               "ExposeHeaders", "MaxAge")
CACHE_S = 1.0
_ID_ALPHABET = string.ascii_lowercase + string.digits


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class UrlConfig:
    url_id: str
    function: str
    qualifier: str | None
    auth_type: str
    cors: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=_now)
    modified: str = field(default_factory=_now)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> UrlConfig:
        return cls(**orjson.loads(raw))


def check_auth_type(auth_type: str) -> str:
    if auth_type not in AUTH_TYPES:
        raise InvalidParameter(f"AuthType must be NONE or AWS_IAM, got {auth_type!r}")
    return auth_type


def check_cors(cors: Any) -> dict[str, Any]:
    if cors is None:
        return {}
    if not isinstance(cors, dict) or set(cors) - set(CORS_FIELDS):
        raise InvalidParameter(f"Cors may hold only {', '.join(CORS_FIELDS)}")
    return dict(cors)


class UrlStore:
    """Create, read, change and delete URL configs (sync, for management), look up (async)."""

    def __init__(
        self,
        client: redis.Redis[bytes],
        aclient: redis.asyncio.Redis[bytes] | None = None,
        prefix: str = "warren",
    ) -> None:
        self._redis = client
        self._aredis = aclient
        self.key = Keys(prefix).urls
        self.index = Keys(prefix).url_index
        self._cache: dict[str, tuple[float, UrlConfig | None]] = {}

    @staticmethod
    def _slot(function: str, qualifier: str | None) -> str:
        return f"{function}|{qualifier or ''}"

    def create(
        self, function: str, qualifier: str | None, auth_type: str, cors: Any = None
    ) -> UrlConfig:
        config = UrlConfig(
            "".join(secrets.choice(_ID_ALPHABET) for _ in range(32)),
            function,
            qualifier,
            check_auth_type(auth_type),
            check_cors(cors),
        )
        with redis_errors("function URLs", self._redis):
            if not self._redis.hsetnx(self.index, self._slot(function, qualifier), config.url_id):
                raise Conflict(
                    f"function {function}"
                    + (f":{qualifier}" if qualifier else "")
                    + " already has a URL: update or delete it"
                )
            self._redis.hset(self.key, config.url_id, config.to_json())
        return config

    def get(self, function: str, qualifier: str | None) -> UrlConfig:
        with redis_errors("function URLs", self._redis):
            url_id = self._redis.hget(self.index, self._slot(function, qualifier))
            raw = self._redis.hget(self.key, url_id) if url_id else None
        if raw is None:
            raise NotFound(
                f"function {function}" + (f":{qualifier}" if qualifier else "") + " has no URL"
            )
        return UrlConfig.from_json(raw)

    def update(
        self,
        function: str,
        qualifier: str | None,
        auth_type: str | None = None,
        cors: Any = None,
    ) -> UrlConfig:
        current = self.get(function, qualifier)
        config = replace(
            current,
            auth_type=check_auth_type(auth_type) if auth_type else current.auth_type,
            cors=check_cors(cors) if cors is not None else current.cors,
            modified=_now(),
        )
        with redis_errors("function URLs", self._redis):
            self._redis.hset(self.key, config.url_id, config.to_json())
        return config

    def delete(self, function: str, qualifier: str | None) -> None:
        config = self.get(function, qualifier)
        with redis_errors("function URLs", self._redis):
            pipe = self._redis.pipeline()
            pipe.hdel(self.index, self._slot(function, qualifier))
            pipe.hdel(self.key, config.url_id)
            pipe.execute()

    def list(self, function: str) -> list[UrlConfig]:
        with redis_errors("function URLs", self._redis):
            slots = {
                k.decode(): v.decode()
                for k, v in self._redis.hscan_iter(self.index, match=f"{function}|*", count=500)
            }
            raws = self._redis.hmget(self.key, list(slots.values())) if slots else []
        return [UrlConfig.from_json(raw) for raw in raws if raw is not None]

    def delete_function(self, function: str) -> None:
        """Every URL of a function that was deleted."""
        for config in self.list(function):
            self.delete(config.function, config.qualifier)

    async def lookup(self, url_id: str) -> UrlConfig | None:
        """The config of a URL id, cached a second (a change reaches every gateway within it)."""
        assert self._aredis is not None
        now = time.monotonic()
        hit = self._cache.get(url_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        with redis_errors("function URLs", self._aredis):  # type: ignore[arg-type]
            raw = await self._aredis.hget(self.key, url_id)
        config = None if raw is None else UrlConfig.from_json(raw)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[url_id] = (now + CACHE_S, config)
        return config
