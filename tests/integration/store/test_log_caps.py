"""Invocation log streams are capped in size and in age, on the worker's own writes."""

from __future__ import annotations

import time

import redis

from warren.store.logs import LogStore
from warren.store.redis import execute_raw


def test_log_stream_drops_entries_older_than_the_age_cap(redis_url: str, unique: str) -> None:
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    store = LogStore(client, f"t{unique}", maxlen=1000, max_age_s=60)
    key = store.key("fn")
    try:
        # Given entries written two minutes ago (explicit ids in the past)
        old_ms = int((time.time() - 120) * 1000)
        for n in range(150):
            client.xadd(key, {"rid": f"old{n}", "ver": "1", "log": "x"}, id=f"{old_ms}-{n}")
        # When the worker writes a new block (its first write trims by age)
        execute_raw(client, [store.append_command("fn", "new", "1", "START\n")])
        # Then the old ones are gone and the new one is kept ("~" trims whole nodes of 100)
        entries = store.read("fn")
        assert entries[-1].request_id == "new"
        assert len(entries) <= 51
        # And the next write within the minute trims by size only
        command = store.append_command("fn", "next", "1", "START\n")
        assert command[2:5] == ("MAXLEN", "~", 1000)
    finally:
        client.delete(key)
        client.close()
