"""The sync lane on Redis: a caller's request on a list per pool, taken by a worker's slot.

A sync call's request travels to a worker the way its reply comes back, on Redis, one hop
where RabbitMQ's lane took two (docs/fleet.md, the sync lane). The wire contract:

- `p:sync:<pool>` (list): requests, pushed on the left by callers, taken from the right.
  Each is an envelope: one flag byte (`N` new, `R` requeued from a dead worker), the
  caller's deadline in Unix milliseconds (8 bytes, big-endian), the length of the packed
  function spec (4 bytes, big-endian), the spec, then the invocation naming it
  (`encode_single` in warren/invocation.py: a worker decodes each spec once). A request
  whose deadline passed is dropped, not run: its caller gave up. The list expires when no
  caller pushed for a while.
- `BLMOVE` moves a request into `p:sync:<pool>:taken:<worker id>.<slot>` as it is taken,
  so a worker that dies leaves its requests where a live one finds them: once its heartbeat
  is gone, `requeue_orphans` puts them back at the lane's taking end, flagged `R` (the taker
  then takes a fencing token first, as for a redelivered AMQP message). A finished request
  is removed from the taken list in the finishing round trip (`done_command`).
- The reply goes to `p:reply:<request id>`, as for the AMQP lane with Redis replies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

import redis

from warren.keys import Keys
from warren.store.redis import Command, evalsha_pipelined

NEW: Final = b"N"
REQUEUED: Final = b"R"
HEADER = 13  # flag + deadline + the spec's length
LANE_IDLE_S = 120  # the lane list expires this long after the last push


def envelope(spec: bytes, item: bytes, deadline_s: float) -> bytes:
    """A request as the lane carries it (`encode_single`'s two parts); `deadline_s` is the
    caller's, in Unix seconds."""
    return b"".join((NEW, int(deadline_s * 1000).to_bytes(8, "big"),
                     len(spec).to_bytes(4, "big"), spec, item))


@dataclass(frozen=True)
class Request:
    """A request as a worker took it: `raw` is what sits in its taken list."""

    raw: bytes

    @property
    def requeued(self) -> bool:
        return self.raw[:1] == REQUEUED

    @property
    def deadline_s(self) -> float:
        return int.from_bytes(self.raw[1:9], "big") / 1000

    def parts(self) -> tuple[bytes, bytes]:
        """(the packed spec, the invocation), for `decode_single`."""
        end = HEADER + int.from_bytes(self.raw[9:HEADER], "big")
        return self.raw[HEADER:end], self.raw[end:]

    def expired(self, now_s: float | None = None) -> bool:
        return (time.time() if now_s is None else now_s) > self.deadline_s

    @property
    def well_formed(self) -> bool:
        if len(self.raw) <= HEADER or self.raw[:1] not in (NEW, REQUEUED):
            return False
        return HEADER + int.from_bytes(self.raw[9:HEADER], "big") < len(self.raw)


def push_commands(keys: Keys, pool: str, request: bytes) -> list[Command]:
    """What a caller sends before it waits for its reply (in the same write)."""
    lane = keys.sync_lane(pool)
    return [("LPUSH", lane, request), ("EXPIRE", lane, LANE_IDLE_S)]


def taker(worker_id: str, slot: int) -> str:
    return f"{worker_id}.{slot}"


def take_command(keys: Keys, pool: str, taker: str, block_s: int) -> Command:
    """A slot's wait for the next request (its reply: the request, or nil after `block_s`)."""
    return ("BLMOVE", keys.sync_lane(pool), keys.sync_taken(pool, taker), "RIGHT", "LEFT",
            block_s)


def done_command(keys: Keys, pool: str, taker: str, raw: bytes) -> Command:
    """Removes a finished (or dropped) request from its taker's taken list."""
    return ("LREM", keys.sync_taken(pool, taker), 1, raw)


# KEYS[1] the takers set, KEYS[2] the lane; ARGV[1] heartbeat key prefix, ARGV[2] taken list
# prefix, ARGV[3] the lane's idle expiry. Keys are built inside: one Redis, as everywhere in
# Warren (a cluster would need the pool's keys under one hash tag).
_REQUEUE = """
local moved = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local worker = string.match(id, '^(.*)%.%d+$') or id
  if redis.call('EXISTS', ARGV[1] .. worker) == 0 then
    local taken = ARGV[2] .. id
    local items = redis.call('LRANGE', taken, 0, -1)
    for i = 1, #items do
      redis.call('RPUSH', KEYS[2], 'R' .. string.sub(items[i], 2))
    end
    if #items > 0 then
      redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
    end
    redis.call('DEL', taken)
    redis.call('SREM', KEYS[1], id)
    moved = moved + #items
  end
end
return moved
"""


class Takers:
    """A worker's slots among its pool's takers, and the requeueing of dead takers' work."""

    def __init__(self, client: redis.Redis[bytes], keys: Keys, pool: str, worker_id: str,
                 slots: int) -> None:
        self._redis = client
        self._keys = keys
        self._pool = pool
        self._mine = [taker(worker_id, n) for n in range(slots)]
        self._sha = ""

    def join_and_requeue(self) -> int:
        """Its slots (again) among the takers, and requests taken by slots of workers whose
        heartbeat is gone back on the lane; how many went back. Run every few seconds."""
        keys = self._keys
        self._redis.sadd(keys.sync_takers(self._pool), *self._mine)
        call = (2, keys.sync_takers(self._pool), keys.sync_lane(self._pool),
                keys.worker(""), keys.sync_taken(self._pool, ""), LANE_IDLE_S)
        replies, self._sha = evalsha_pipelined(self._redis, _REQUEUE, self._sha, [call])
        return int(replies[0])

    def leave(self) -> bool:
        """Out of the takers, unless requests are still in its taken lists (then a live
        worker requeues them once this one's heartbeat is gone); True if it left."""
        lists = [self._keys.sync_taken(self._pool, mine) for mine in self._mine]
        if sum(int(self._redis.llen(key)) for key in lists):
            return False
        self._redis.srem(self._keys.sync_takers(self._pool), *self._mine)
        return True

    def reclaim(self, slot: int, running: set[bytes]) -> int:
        """A slot whose lane connection broke: what its taken list holds that no slot runs
        (taken by the BLMOVE that went with the connection) back on the lane; how many."""
        key = self._keys.sync_taken(self._pool, self._mine[slot])
        moved = 0
        for raw in self._redis.lrange(key, 0, -1):
            if bytes(raw) in running or not self._redis.lrem(key, 1, raw):
                continue
            self._redis.rpush(self._keys.sync_lane(self._pool), REQUEUED + bytes(raw)[1:])
            moved += 1
        return moved
