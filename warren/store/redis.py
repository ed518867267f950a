"""Warren's edge to Redis: connecting, the one translator of redis-py's errors, raw pipelines.

No module outside this one (and broker_adapters/, which talks to users' Redis streams) catches a
redis-py exception: everything else catches `StoreUnavailable` from `redis_errors`.

`execute_raw` is a Redis pipeline without redis-py's per-command Python work, for the worker's
hot path. Each finished invocation costs a log XADD, a counter and often a lease release.
Through redis-py's pipeline object that is about 10 us of client CPU per command (argument
encoding, command stack, observability hooks) against 4 us here: the commands are packed by
hiredis in C, written with one send and their replies read in order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import hiredis
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from warren.errors import StoreUnavailable
from warren.settings import RedisSettings

Command = tuple[Any, ...]
CONNECT_TIMEOUT_S = 5.0


#: No command of Warren blocks longer than 2 s (BLPOP 1 s, XREAD 1 s), so a reply that takes
#: longer than this means the server or the road to it is gone: fail, reconnect, retry.
SOCKET_TIMEOUT_S = 10.0
RETRIES = 3  # a restarted Redis answers within these (about 0.05, 0.1, 0.2 s apart)
HEALTH_CHECK_S = 15  # an idle connection is PINGed before use after this long


def connect(
    settings: RedisSettings, *, connect_timeout_s: float | None = CONNECT_TIMEOUT_S
) -> redis.Redis[bytes]:
    """A client for Warren's own Redis. Connecting is lazy; the first command may raise.

    It rides out a Redis restart or a silent network: a command whose connection broke or
    timed out is retried on a new connection a few times with a backoff before it raises;
    idle connections are health-checked before use; no read waits forever.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout_s,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_S,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), RETRIES),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    if settings.sentinels:
        return _through_sentinel(settings, options)
    client: redis.Redis[bytes] = redis.Redis.from_url(settings.url, **options)
    return client


def _through_sentinel(settings: RedisSettings, options: dict[str, Any]) -> redis.Redis[bytes]:
    """The master a group of sentinels names; after a fail-over its connections fail, and the
    retries find the new master by asking the sentinels again."""
    from urllib.parse import unquote

    from redis.sentinel import Sentinel

    userinfo = settings.url[len("redis+sentinel://"):].partition("/")[0].rpartition("@")[0]
    password = unquote(userinfo.partition(":")[2]) if userinfo else None
    sentinel = Sentinel(
        list(settings.sentinels),
        sentinel_kwargs={"socket_timeout": CONNECT_TIMEOUT_S},
        password=password or None,
        **options,
    )
    client: redis.Redis[bytes] = sentinel.master_for(settings.master, db=settings.db)
    return client


def dedicated(client: redis.Redis[bytes]) -> redis.Redis[bytes]:
    """A client that keeps one connection of `client`'s pool for itself: a hot caller skips the
    pool's checkout and liveness probe on every command."""
    return redis.Redis(connection_pool=client.connection_pool, single_connection_client=True)


def pop_waiting(client: redis.Redis[bytes], key: str, timeout_s: int) -> bytes | None:
    """BLPOP `key` for up to `timeout_s` on a `dedicated` client's connection: one packed
    command and its reply, under none of redis-py's command layers. No retry: a reply list
    lives in memory only, so a Redis that went away took it, and the wait fails at once."""
    conn: Any = getattr(client, "connection", None)
    if conn is None:  # not a dedicated client
        got = client.blpop([key], timeout=timeout_s)
        return None if got is None else bytes(got[1])
    try:
        command: tuple[Any, ...] = ("BLPOP", key, timeout_s)
        conn.send_packed_command([hiredis.pack_command(command)])
        reply = conn.read_response()
    except BaseException:
        conn.disconnect()  # never leave a reply unread on it
        raise
    return None if reply is None else bytes(reply[1])


def sharing(client: redis.Redis[bytes]) -> redis.Redis[bytes]:
    """Another client on `client`'s pool (for a thread of its own)."""
    return redis.Redis(connection_pool=client.connection_pool)


def location(client: redis.Redis[Any]) -> str:
    """Where a client points, for messages (never with its password)."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    host, port = kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379)
    return f"redis://{host}:{port}/{kwargs.get('db', 0)}"


@contextmanager
def redis_errors(what: str, client: redis.Redis[Any] | None = None) -> Iterator[None]:
    """Translate redis-py's exceptions into StoreUnavailable, once, at this edge.

    `what` names what was being done ("the registry", "stream 'orders'"); `client`, when given,
    adds where Redis is. Also usable as a decorator.
    """
    where = f" at {location(client)}" if client is not None else ""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"{what}: cannot reach Redis{where}: {exc}") from None
    except redis.RedisError as exc:
        raise StoreUnavailable(f"{what}: Redis{where} failed: {exc}") from None


def is_error_reply(reply: Any) -> bool:
    """Whether a raw reply (execute_raw's list) is an error reply."""
    return isinstance(reply, redis.ResponseError)


def evalsha_pipelined(
    client: redis.Redis[bytes], script: str, sha: str, calls: Sequence[tuple[Any, ...]]
) -> tuple[list[Any], str]:
    """Run `script` once per call (`(numkeys, *keys_and_args)`) in one plain pipeline; returns
    the replies and the script's sha, to pass back next time ("" the first time).

    EVALSHA in a plain pipeline: redis-py's Script objects would add a SCRIPT EXISTS round trip
    to every pipeline. The script is loaded once, and again after a SCRIPT FLUSH or a restart.
    """
    for attempt in (1, 2):
        if not sha:
            sha = str(client.script_load(script))  # type: ignore[no-untyped-call]
        pipe = client.pipeline(transaction=False)
        for call in calls:
            pipe.evalsha(sha, *call)
        try:
            return list(pipe.execute()), sha
        except redis.exceptions.NoScriptError:
            if attempt == 2:
                raise
            sha = ""
    return [], sha


def execute_raw(client: redis.Redis[bytes], commands: Sequence[Command]) -> list[Any]:
    """Run `commands` in one round trip; raises the first error reply as redis.ResponseError.

    A connection error (or any failure mid-way) drops the connection, so the pool never hands
    out one with unread replies on it.
    """
    if not commands:
        return []
    pool = client.connection_pool
    conn = pool.get_connection()
    replies: list[Any] = []
    try:
        conn.send_packed_command([b"".join(hiredis.pack_command(c) for c in commands)])
        failure: redis.ResponseError | None = None
        for _ in commands:
            try:
                replies.append(conn.read_response())
            except redis.ResponseError as exc:  # read the rest: the connection stays usable
                failure = failure or exc
                replies.append(exc)
        if failure is not None:
            raise failure
    except redis.ResponseError:
        pool.release(conn)
        raise
    except BaseException:
        conn.disconnect()
        pool.release(conn)
        raise
    pool.release(conn)
    return replies
