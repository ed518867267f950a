"""Per-function log streams in Redis: each invocation's START…REPORT block, bounded retention.

Each stream is capped in size (`maxlen` entries, trimmed approximately on every XADD) and, with
`max_age_s`, in age: once a minute per function and process, the XADD trims by MINID instead
(entries older than the age go), so the cap costs no command of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from warren.keys import Keys

DEFAULT_MAXLEN = 10_000
DEFAULT_MAX_AGE_S = 7 * 86400.0
AGE_TRIM_EVERY_S = 60.0


@dataclass(frozen=True)
class LogEntry:
    id: str
    timestamp: float
    request_id: str
    version: str
    text: str


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class LogStore:
    """`append` one block per invocation; `read` by time; `follow` tails new blocks."""

    def __init__(
        self,
        client: redis.Redis[bytes],
        prefix: str = "warren",
        maxlen: int = DEFAULT_MAXLEN,
        max_age_s: float | None = None,
    ):
        self._redis = client
        self._prefix = prefix
        self.maxlen = maxlen
        self.max_age_s = max_age_s
        self._age_trim_at: dict[str, float] = {}

    def key(self, function: str) -> str:
        return Keys(self._prefix).logs(function)

    def append(
        self, function: str, request_id: str, version: str, text: str, pipe: Any = None
    ) -> None:
        """XADD with approximate trimming; pass a pipeline to share a round trip."""
        target = pipe if pipe is not None else self._redis
        target.xadd(
            self.key(function),
            {"rid": request_id, "ver": version, "log": text},
            maxlen=self.maxlen,
            approximate=True,
        )

    def append_command(
        self, function: str, request_id: str, version: str, text: str
    ) -> tuple[str | int, ...]:
        """The same XADD as a raw command, for `warren.store.redis.execute_raw`."""
        trim: tuple[str | int, ...] = ("MAXLEN", "~", self.maxlen)
        if self.max_age_s:
            now = time.time()
            if now >= self._age_trim_at.get(function, 0.0):
                self._age_trim_at[function] = now + AGE_TRIM_EVERY_S
                trim = ("MINID", "~", f"{int((now - self.max_age_s) * 1000)}-0")
        return (
            "XADD", self.key(function), *trim, "*",
            "rid", request_id, "ver", version, "log", text,
        )  # fmt: skip

    def read(
        self, function: str, since_s: float | None = None, count: int = 1000
    ) -> list[LogEntry]:
        """The last `count` blocks, optionally only those of the last `since_s` seconds."""
        start = "-" if since_s is None else f"{int((time.time() - since_s) * 1000)}-0"
        rows = self._redis.xrevrange(self.key(function), "+", start, count=count)
        return [self._entry(eid, fields) for eid, fields in reversed(rows)]

    def follow(
        self, function: str, since_s: float | None = None, block_ms: int = 1000
    ) -> Iterator[LogEntry]:
        """Yield existing blocks (per `since_s`), then new ones as they arrive, forever."""
        last = "0-0"
        for entry in self.read(function, since_s):
            last = entry.id
            yield entry
        if last == "0-0":
            last = "$" if since_s is None else f"{int((time.time() - since_s) * 1000)}-0"
        while True:
            reply = self._redis.xread({self.key(function): last}, block=block_ms, count=100)
            for _stream, rows in reply or []:
                for eid, fields in rows:
                    entry = self._entry(eid, fields)
                    last = entry.id
                    yield entry

    def _entry(self, eid: Any, fields: Any) -> LogEntry:
        ident = _text(eid)
        values = {_text(k): _text(v) for k, v in fields.items()}
        return LogEntry(
            id=ident,
            timestamp=int(ident.split("-")[0]) / 1000,
            request_id=values.get("rid", ""),
            version=values.get("ver", ""),
            text=values.get("log", ""),
        )
