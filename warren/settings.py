"""Settings parsed once at the edge from an injected environment, then passed down frozen."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from warren.errors import ConfigError

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_ACCOUNT_CONCURRENCY = 1000
DEFAULT_SYNC_LEASE_IDLE_MS = 50  # a sync caller keeps an idle lease (admission/parking)
#: Durable queues are quorum queues (replicated, survive a node's loss); classic for brokers
#: older than RabbitMQ 3.10 (quorum queues without message TTL) or a single-node test box.
QUEUE_TYPES = ("quorum", "classic")
DEFAULT_USAGE_RETENTION_DAYS = 90.0
SYNC_LANES = ("redis", "amqp")  # where a sync request travels to a worker (docs/fleet.md)
SYNC_REPLIES = ("amqp", "redis")  # how a sync result comes back (docs/fleet.md, Wire contracts)


def redact(url: str) -> str:
    """`url` with its password (and a user name alone, which may be a Redis password) hidden."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***" if parts.password is not None else "***"
    return parts._replace(netloc=f"{user}@{host}").geturl()


@dataclass(frozen=True)
class AmqpSettings:
    """The broker (or brokers of one cluster: `url` may list several, comma-separated; the
    fields describe the first, `urls` lists them all for fail-over)."""

    url: str
    host: str
    port: int
    vhost: str
    username: str
    password: str
    urls: tuple[str, ...] = ()
    queue_type: str = "quorum"  # of the fleet's durable queues (WARREN_QUEUE_TYPE)
    fastpath: bool = True  # pika's internals for speed (broker_adapters/amqp_fastpath.py)

    @classmethod
    def from_url(
        cls, url: str, queue_type: str = "quorum", *, fastpath: bool = True
    ) -> AmqpSettings:
        urls = tuple(part.strip() for part in url.split(",") if part.strip())
        if not urls:
            raise ConfigError("AMQP URL is empty")
        if queue_type not in QUEUE_TYPES:
            raise ConfigError(
                f"WARREN_QUEUE_TYPE must be one of {', '.join(QUEUE_TYPES)}, got {queue_type!r}"
            )
        first = cls._one(urls[0])
        for other in urls[1:]:
            cls._one(other)  # each must parse
        return cls(
            url=",".join(urls),
            host=first.host,
            port=first.port,
            vhost=first.vhost,
            username=first.username,
            password=first.password,
            urls=urls,
            queue_type=queue_type,
            fastpath=fastpath,
        )

    @classmethod
    def _one(cls, url: str) -> AmqpSettings:
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise ConfigError(
                f"AMQP URL must start with amqp:// or amqps://, got {redact(url)!r}"
            )
        try:
            port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
        except ValueError as exc:
            raise ConfigError(f"bad port in AMQP URL {redact(url)!r}: {exc}") from None
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        return cls(
            url=url,
            host=parts.hostname or "127.0.0.1",
            port=port,
            vhost=unquote(path) if path else "/",
            username=unquote(parts.username or "guest"),
            password=unquote(parts.password or "guest"),
            urls=(url,),
        )


@dataclass(frozen=True)
class RedisSettings:
    """Warren's Redis: `redis://`, `rediss://`, `unix://`, or through Sentinel:
    `redis+sentinel://[:PASSWORD@]HOST:26379,HOST:26379/MASTER/DB` (the client asks the
    sentinels where the master is, and again after a fail-over)."""

    url: str
    host: str
    port: int
    db: int
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""

    @classmethod
    def from_url(cls, url: str) -> RedisSettings:
        if url.startswith("redis+sentinel://"):
            return cls._sentinel(url)
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"Redis URL must start with redis://, rediss:// or unix://, got {redact(url)!r}"
            )
        try:
            port = parts.port or 6379
            if parts.scheme == "unix":  # unix:///run/redis.sock?db=0: the path is the socket
                db = int(parse_qs(parts.query).get("db", ["0"])[0])
            else:
                db = int(parts.path.strip("/") or 0)
        except ValueError as exc:
            raise ConfigError(f"bad Redis URL {redact(url)!r}: {exc}") from None
        return cls(url=url, host=parts.hostname or "127.0.0.1", port=port, db=db)

    @classmethod
    def _sentinel(cls, url: str) -> RedisSettings:
        rest = url[len("redis+sentinel://"):]
        netloc, _, path = rest.partition("/")
        hosts = netloc.rpartition("@")[2]
        master, _, db_text = path.partition("/")
        sentinels: list[tuple[str, int]] = []
        try:
            for host in hosts.split(","):
                name, _, port = host.strip().rpartition(":")
                sentinels.append((name or port, int(port) if name else 26379))
            db = int(db_text.strip("/") or 0)
        except ValueError:
            sentinels = []
            db = -1
        if not sentinels or not master or db < 0:
            raise ConfigError(
                f"bad Sentinel URL {url.split('@')[-1]!r}: use "
                "redis+sentinel://[:PASSWORD@]HOST:26379,HOST:26379/MASTER/DB"
            )
        return cls(url=url, host=sentinels[0][0], port=sentinels[0][1], db=db,
                   sentinels=tuple(sentinels), master=master)


@dataclass(frozen=True)
class Settings:
    amqp: AmqpSettings
    redis: RedisSettings
    account_concurrency: int = DEFAULT_ACCOUNT_CONCURRENCY
    prefix: str = "warren"
    sync_lease_idle_s: float = DEFAULT_SYNC_LEASE_IDLE_MS / 1000
    sync_lane: str = "redis"  # where a Client's sync requests go: Redis list or AMQP queue
    sync_reply: str = "redis"  # how sync results come back on the AMQP lane (docs/fleet.md)
    mapping_sync_reply: str = "redis"  # the poller's own batch invokes (docs/mappings.md)
    usage_retention_days: float = DEFAULT_USAGE_RETENTION_DAYS  # metered usage (docs/operate.md)
    log_maxlen: int = 10_000  # invocation log blocks kept per function (store/logs.py)
    log_max_age_days: float = 7.0  # and for how long

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        amqp_url: str | None = None,
        redis_url: str | None = None,
    ) -> Settings:
        raw_limit = environ.get("WARREN_ACCOUNT_CONCURRENCY", str(DEFAULT_ACCOUNT_CONCURRENCY))
        try:
            limit = int(raw_limit)
        except ValueError:
            raise ConfigError(
                f"WARREN_ACCOUNT_CONCURRENCY must be a whole number, got {raw_limit!r}"
            ) from None
        if limit < 1:
            raise ConfigError("WARREN_ACCOUNT_CONCURRENCY must be at least 1")
        raw_idle = environ.get("WARREN_SYNC_LEASE_IDLE_MS", str(DEFAULT_SYNC_LEASE_IDLE_MS))
        try:
            idle_ms = float(raw_idle)
        except ValueError:
            idle_ms = -1
        if not 0 <= idle_ms <= 10_000:
            raise ConfigError(
                f"WARREN_SYNC_LEASE_IDLE_MS must be 0 (off) to 10000 milliseconds, got {raw_idle!r}"
            )
        sync_lane = _choice(environ, "WARREN_SYNC_LANE", "redis", SYNC_LANES)
        sync_reply = _sync_reply(environ, "WARREN_SYNC_REPLY", "redis")
        mapping_sync_reply = _sync_reply(environ, "WARREN_MAPPING_SYNC_REPLY", "redis")
        retention = _days(environ, "WARREN_USAGE_RETENTION_DAYS", DEFAULT_USAGE_RETENTION_DAYS)
        log_age = _days(environ, "WARREN_LOG_MAX_AGE_DAYS", 7.0)
        raw_maxlen = environ.get("WARREN_LOG_MAXLEN", "10000")
        try:
            log_maxlen = int(raw_maxlen)
        except ValueError:
            log_maxlen = 0
        if log_maxlen < 10:
            raise ConfigError(f"WARREN_LOG_MAXLEN must be at least 10 entries, got {raw_maxlen!r}")
        return cls(
            amqp=AmqpSettings.from_url(
                amqp_url or environ.get("WARREN_AMQP_URL", DEFAULT_AMQP_URL),
                queue_type=environ.get("WARREN_QUEUE_TYPE", "quorum").strip().lower(),
                fastpath=_switch(environ, "WARREN_AMQP_FASTPATH", True),
            ),
            redis=RedisSettings.from_url(
                redis_url or environ.get("WARREN_REDIS_URL", DEFAULT_REDIS_URL)
            ),
            account_concurrency=limit,
            prefix=environ.get("WARREN_PREFIX", "warren"),
            sync_lease_idle_s=idle_ms / 1000,
            sync_lane=sync_lane,
            sync_reply=sync_reply,
            mapping_sync_reply=mapping_sync_reply,
            usage_retention_days=retention,
            log_maxlen=log_maxlen,
            log_max_age_days=log_age,
        )


def _sync_reply(environ: Mapping[str, str], name: str, default: str) -> str:
    return _choice(environ, name, default, SYNC_REPLIES)


def _choice(environ: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = environ.get(name, default).strip().lower() or default
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {environ[name]!r}")
    return value


def _days(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "")
    if not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0
    if not 0 < value <= 3660:
        raise ConfigError(f"{name} must be a number of days from 1/24 to 3660, got {raw!r}")
    return value


def _switch(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0 (on or off), got {environ[name]!r}")
