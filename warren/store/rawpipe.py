"""A Redis pipeline without redis-py's per-command Python work, for the worker's hot path.

Each finished invocation costs a log XADD, a counter and often a lease release. Through
redis-py's pipeline object that is about 10 us of client CPU per command (argument encoding,
command stack, observability hooks) against 4 us here: the commands are packed by hiredis in
C, written with one send and their replies read in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis
import redis

Command = tuple[Any, ...]


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
