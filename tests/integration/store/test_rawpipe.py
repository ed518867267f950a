"""`execute_raw`: many commands, one round trip, replies in order, errors reported, no leaks."""

from __future__ import annotations

import pytest
import redis

from warren.store.redis import execute_raw


def test_replies_come_back_in_order(conn: redis.Redis, unique: str) -> None:
    key = f"raw{unique}"
    try:
        replies = execute_raw(
            conn,
            [("HINCRBY", key, "n", 2), ("HINCRBY", key, "n", 3), ("HGET", key, "n"), ("DEL", key)],
        )
        assert replies == [2, 5, b"5", 1]
        assert execute_raw(conn, []) == []
    finally:
        conn.delete(key)


def test_an_error_reply_raises_after_the_rest_ran_and_the_connection_stays_usable(
    conn: redis.Redis, unique: str
) -> None:
    key = f"raw{unique}"
    try:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            execute_raw(conn, [("SET", key, "x"), ("HINCRBY", key, "n", 1), ("SET", key, "y")])
        assert conn.get(key) == b"y"  # the command after the failing one ran too
        assert execute_raw(conn, [("GET", key)]) == [b"y"]  # no stray reply left behind
    finally:
        conn.delete(key)


def test_an_unreachable_server_raises_a_connection_error() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        execute_raw(client, [("PING",)])
    client.close()
