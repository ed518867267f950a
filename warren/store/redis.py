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


def pop_waiting(
    client: redis.Redis[bytes], key: str, timeout_s: int, before: Sequence[Command] = ()
) -> bytes | None:
    """BLPOP `key` for up to `timeout_s` on a `dedicated` client's connection: one packed
    write (`before`'s commands first, their replies read and dropped) and its replies, under
    none of redis-py's command layers. No retry: a reply list lives in memory only, so a Redis
    that went away took it, and the wait fails at once."""
    return PendingPop(client, key, timeout_s, before).poll(None)[1]


class PendingPop:
    """`pop_waiting` in two steps: the write now, the reply when `poll` finds it there, so
    the thread can do other work on other connections meanwhile (a mapping's poller reads
    ahead while its batch runs). Until polled to the end, the connection is this pop's."""

    def __init__(self, client: redis.Redis[bytes], key: str, timeout_s: int,
                 before: Sequence[Command] = ()) -> None:
        self._conn: Any = getattr(client, "connection", None)
        self._skip = len(before)
        self._reply: tuple[bool, bytes | None] = (False, None)
        if self._conn is None:  # not a dedicated client: popped now, whole
            if before:
                execute_raw(client, before)
            got = client.blpop([key], timeout=timeout_s)
            self._reply = (True, None if got is None else bytes(got[1]))
            return
        commands: list[Command] = [*before, ("BLPOP", key, timeout_s)]
        try:
            self._conn.send_packed_command([b"".join(hiredis.pack_command(c) for c in commands)])
        except BaseException:
            self._conn.disconnect()
            raise

    def poll(self, wait_s: float | None) -> tuple[bool, bytes | None]:
        """(True, the popped value or None at the pop's timeout) once the reply came; (False,
        None) if it did not within `wait_s` (None: wait for it)."""
        if self._reply[0] or self._conn is None:
            return self._reply
        try:
            if self._skip:
                _, failure = _read_replies(self._conn, self._skip)
                self._skip = 0
                if failure is not None:  # the pop waits on: not for its reply
                    raise failure
            if wait_s is not None and not self._conn.can_read(wait_s):
                return self._reply
            reply = self._conn.read_response()
        except BaseException:
            self.abandon()  # never leave a reply unread on it
            raise
        self._reply = (True, None if reply is None else bytes(reply[1]))
        return self._reply

    def abandon(self) -> None:
        """Drop the connection with the pop outstanding (it connects again on its next use)."""
        if self._conn is not None and not self._reply[0]:
            self._conn.disconnect()
            self._reply = (True, None)


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


def _read_replies(conn: Any, count: int) -> tuple[list[Any], redis.ResponseError | None]:
    """`count` replies off `conn`, an error reply kept in place; the first error is returned
    too, once all are read (the connection stays usable)."""
    replies: list[Any] = []
    failure: redis.ResponseError | None = None
    for _ in range(count):
        try:
            replies.append(conn.read_response())
        except redis.ResponseError as exc:
            failure = failure or exc
            replies.append(exc)
    return replies, failure


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
        replies, failure = _read_replies(conn, len(commands))
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


CLIENT_ID: Any = ("CLIENT", "ID")


def kill_client(client: redis.Redis[bytes], client_id: int) -> None:
    """Close another connection by its id, server-side (nothing if it is gone already)."""
    try:
        client.execute_command("CLIENT", "KILL", "ID", client_id)
    except redis.ResponseError:
        pass  # no such client


class Blocking:
    """A connection of `client`'s pool kept for one blocking command at a time, sent now and
    read once its socket is readable: how a worker's slot waits on Redis and on its broker
    socket at once (workers/lane.py). Any failure drops the connection (StoreUnavailable); the
    next `send` connects again."""

    def __init__(self, client: redis.Redis[bytes]) -> None:
        self._client = client
        self._conn: Any = None
        self.client_id = 0
        self.outstanding = False
        self.lost_id = 0  # a connection closed with its command outstanding (0: none)

    def send(self, command: Command) -> None:
        with redis_errors("the sync lane", self._client):
            try:
                if self._conn is None:
                    self._connect()
                self._conn.send_packed_command([hiredis.pack_command(command)], check_health=False)
            except BaseException:
                self.close()
                raise
        self.outstanding = True

    def execute_then(self, commands: Sequence[Command], then: Command) -> list[Any]:
        """`commands` and their replies (as execute_raw), with the blocking `then` sent in
        the same write and left outstanding: one write where two would do."""
        failure: redis.ResponseError | None = None
        replies: list[Any] = []
        with redis_errors("the sync lane", self._client):
            try:
                if self._conn is None:
                    self._connect()
                packed = b"".join(hiredis.pack_command(c) for c in [*commands, then])
                self._conn.send_packed_command([packed], check_health=False)
                self.outstanding = True
                replies, failure = _read_replies(self._conn, len(commands))
            except BaseException:
                self.close()
                raise
        if failure is not None:
            raise failure
        return replies

    def fileno(self) -> int | None:
        sock = getattr(self._conn, "_sock", None)
        return None if sock is None or not self.outstanding else int(sock.fileno())

    def _connect(self) -> None:
        conn = self._client.connection_pool.make_connection()
        conn.connect()
        conn.send_packed_command([hiredis.pack_command(CLIENT_ID)])
        self.client_id = int(conn.read_response())
        self._conn = conn

    def buffered(self) -> bool:
        """Whether the outstanding command's reply was read off the socket already, with the
        replies before it: the socket will not show it readable, so look here first."""
        if not self.outstanding:
            return False
        reader = getattr(getattr(self._conn, "_parser", None), "_reader", None)
        if reader is None:  # not hiredis's parser: ask the connection (a syscall)
            return self.ready()
        return bool(reader.has_data())

    def ready(self) -> bool:
        """Whether the outstanding command's reply can be read without waiting."""
        if not self.outstanding:
            return False
        with redis_errors("the sync lane", self._client):
            try:
                return bool(self._conn.can_read(0))
            except BaseException:
                self.close()
                raise

    def read(self) -> Any:
        """The outstanding command's reply (waits for it, up to the socket timeout)."""
        with redis_errors("the sync lane", self._client):
            try:
                reply = self._conn.read_response()
            except BaseException:
                self.close()
                raise
        self.outstanding = False
        return reply

    def close(self) -> None:
        if self.outstanding and self.client_id:
            self.lost_id = self.client_id
        conn, self._conn, self.outstanding = self._conn, None, False
        if conn is not None:
            conn.disconnect()
