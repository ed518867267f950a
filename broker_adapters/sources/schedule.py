"""Schedule source: one EventBridge "Scheduled Event" per tick, exactly once across the fleet."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import orjson
import redis

from broker_adapters.sources.rate import ScheduleExpression
from warren.errors import InvalidParameter
from warren.source import SourceIdentity, SourceRecord
from warren.store.redis import redis_errors

# Claims a tick and lists it as pending in one step, so a crash cannot leave it claimed but
# unlisted (and so never offered).
_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
  return 1
end
return 0
"""
_NEVER = 253402300799.0  # 9999-12-31: "no further tick" (the expression has run out)

# Moves the schedule's "next tick" forward only; resets it when the expression changed.
_ADVANCE = """
local expr = redis.call('HGET', KEYS[1], 'expr')
local cur = tonumber(redis.call('HGET', KEYS[1], 'next'))
if expr ~= ARGV[2] or cur == nil or tonumber(ARGV[1]) > cur then
  redis.call('HSET', KEYS[1], 'next', ARGV[1], 'expr', ARGV[2])
end
return redis.call('HGET', KEYS[1], 'next')
"""


class ScheduleSource:
    """Offers each due tick of a rate or cron expression as one scheduled event.

    A tick is claimed with SET NX on `{prefix}:mapping:{id}:tick:{epoch}`, so however many
    pollers read the same schedule, one of them gets it. A claimed tick stays listed in
    `...:schedule:pending` until committed; a source opened later adopts the pending ticks it
    finds (a mapping has one owner at a time: whatever is pending was left by a dead one).
    Ticks missed while no poller ran are offered late, oldest first, unless older than
    `max_age_s` (EventBridge's default maximum event age, 24 h).
    """

    kind = "schedule"
    ordered = False

    def __init__(
        self,
        store: redis.Redis[Any],
        expression: ScheduleExpression,
        identity: SourceIdentity,
        *,
        rule_name: str | None = None,
        max_age_s: float = 86400.0,
    ) -> None:
        self._store = store
        self._expression = expression
        self._identity = identity
        self._max_age_s = max_age_s
        self._state = identity.key("schedule")
        self._pending = identity.key("schedule", "pending")
        self._advance = store.register_script(_ADVANCE)
        self._claim = store.register_script(_CLAIM)
        rule = rule_name or f"warren-{identity.mapping_id}"
        self._resource = f"arn:aws:events:{identity.region}:{identity.account}:rule/{rule}"
        self._retry: list[float] = []
        self._inflight: set[float] = set()
        with redis_errors("schedule"):
            first = self._expression.next_after(time.time() - 0.001)
            self._next = self._move(first if first is not None else _NEVER, initial=True)
            adopted = store.zrange(self._pending, 0, -1, withscores=True)
        self._retry = sorted(float(score) for _, score in adopted)

    # -- the seam -------------------------------------------------------------------------

    def read(self, max_records: int, wait_s: float) -> list[SourceRecord]:
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            with redis_errors("schedule"):
                out = self._take(max_records)
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            time.sleep(min(remaining, max(0.01, self._next - time.time()), 1.0))

    def event(self, records: Sequence[SourceRecord]) -> dict[str, Any]:
        if len(records) != 1:
            raise InvalidParameter(
                f"a scheduled event carries exactly one tick, not {len(records)}: "
                "invoke once per schedule record"
            )
        return records[0].record

    def encoded_event(self, records: Sequence[SourceRecord]) -> dict[str, Any]:
        return self.event(records)

    def commit(self, records: Sequence[SourceRecord]) -> None:
        with redis_errors("schedule"):
            pipe = self._store.pipeline(transaction=False)
            for record in records:
                pipe.set(self._tick_key(record.arrival), "done", xx=True, keepttl=True)
                pipe.zrem(self._pending, _member(record.arrival))
            pipe.execute()
        self._inflight.difference_update(r.arrival for r in records)

    def retry(self, records: Sequence[SourceRecord]) -> None:
        ticks = [r.arrival for r in records if r.arrival in self._inflight]
        self._inflight.difference_update(ticks)
        self._retry = sorted(self._retry + ticks)

    def lag_s(self) -> float | None:
        oldest = min([*self._retry, *self._inflight, self._next], default=self._next)
        return max(0.0, time.time() - oldest)

    def close(self) -> None:
        pass

    # -- internals ------------------------------------------------------------------------

    def _take(self, limit: int) -> list[SourceRecord]:
        now = time.time()
        out = [self._record(tick) for tick in self._retry[:limit]]
        self._retry = self._retry[limit:]
        self._next = self._current()
        tick: float | None = self._next
        if tick is not None and tick < now - self._max_age_s:  # skip what is too old
            tick = self._expression.next_after(now - self._max_age_s)
        claimed: list[float] = []
        while tick is not None and tick <= now and len(out) + len(claimed) < limit:
            ttl = int(self._max_age_s) + 3600
            if self._claim(keys=[self._tick_key(tick), self._pending],
                           args=[self._identity.consumer, ttl, _member(tick), repr(tick)]):
                claimed.append(tick)
            tick = self._expression.next_after(tick)
        if tick is None:
            tick = _NEVER
        if tick != self._next:
            self._next = self._move(tick)
        out += [self._record(t) for t in claimed]
        self._inflight.update(r.arrival for r in out)
        return out

    def _current(self) -> float:
        raw = self._store.hget(self._state, "next")
        return float(raw) if raw is not None else self._next

    def _move(self, tick: float, initial: bool = False) -> float:
        if initial:
            current = self._store.hmget(self._state, ["next", "expr"])
            if current[0] is not None and _text(current[1]) == self._expression.text:
                return float(current[0])
        return float(self._advance(keys=[self._state], args=[repr(tick), self._expression.text]))

    def _tick_key(self, tick: float) -> str:
        return self._identity.key("tick", _member(tick))

    def _record(self, tick: float) -> SourceRecord:
        moment = datetime.fromtimestamp(tick, tz=timezone.utc)
        event: dict[str, Any] = {
            "version": "0",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"warren:{self._resource}:{tick}")),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self._identity.account,
            "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self._identity.region,
            "resources": [self._resource],
            "detail": {},
        }
        data = orjson.dumps(event)
        return SourceRecord(id=str(event["time"]), data=data, record=event, size=len(data),
                            arrival=tick)


def _member(tick: float) -> str:
    return str(int(tick)) if tick == int(tick) else repr(tick)


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
