"""Fencing tokens: a worker whose chunk was taken over meanwhile finishes nothing of it.

A chunk goes to a second worker only when the broker redelivers it (the first one's connection
was closed: a broker restart, or a worker frozen past its heartbeats). A redelivered chunk
claims a new token (INCR of the chunk's fence key); a first delivery holds token 0, with no
Redis call on the hot path. The finishing Redis writes (replies, lease release, logs,
counters) run in one Lua call that first checks the key still holds the finisher's token, so
a worker that wakes up after its work was taken over publishes and releases nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from warren.invocation import Invocation

FENCE_KEEP_S = 86_400  # a frozen worker waking up later than this is not fenced any more

FENCED_EXEC = """
if tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then return 0 end
local i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"""


def fence_key(prefix: str, invocations: Sequence[Invocation]) -> str:
    """One key per chunk: a redelivery carries the same first invocation and attempt."""
    first = invocations[0]
    return f"{prefix}:fence:{first.request_id}:{first.attempt}"


def claim(client: redis.Redis[bytes], key: str) -> int:
    """A new token for a redelivered chunk: whoever held it before is fenced off."""
    pipe = client.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, FENCE_KEEP_S)
    token, _ = pipe.execute()
    return int(token)


def fenced(key: str, token: int, commands: Sequence[Sequence[Any]]) -> tuple[Any, ...]:
    """`commands` as one EVAL that runs them only while `key` holds `token` (reply 1, else 0)."""
    args: list[Any] = [token]
    for command in commands:
        args.append(len(command))
        args.extend(command)
    return ("EVAL", FENCED_EXEC, 1, key, *args)
