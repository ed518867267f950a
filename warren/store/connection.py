"""Redis clients that ride out a Redis restart or a silent network: timeouts and retries."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

#: No command of Warren blocks longer than 2 s (BLPOP 1 s, XREAD 1 s), so a reply that takes
#: longer than this means the server or the road to it is gone: fail, reconnect, retry.
SOCKET_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
RETRIES = 3  # a restarted Redis answers within these (about 0.05 + 0.1 + 0.2 s apart)


def redis_client(url: str, **options: Any) -> redis.Redis[bytes]:
    """A client for `url` that reconnects: a connection error or timeout is retried on a new
    connection a few times with a backoff before it is raised; idle connections are
    health-checked before use, so a restarted server costs no failed command."""
    settings: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_keepalive": True,
        "health_check_interval": 15,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), RETRIES),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    settings.update(options)
    client: redis.Redis[bytes] = redis.Redis.from_url(url, **settings)
    return client
