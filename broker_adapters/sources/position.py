"""Where a new mapping starts reading: Lambda's TRIM_HORIZON, LATEST and AT_TIMESTAMP."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

from warren.errors import InvalidParameter

_HINT = "use trim-horizon, latest or at-timestamp:<ISO8601 or epoch seconds>"


@dataclass(frozen=True)
class StartPosition:
    kind: str  # "trim-horizon" | "latest" | "at-timestamp"
    timestamp: float | None = None  # epoch seconds, only for at-timestamp

    @classmethod
    def parse(cls, text: str) -> StartPosition:
        raw = text.strip()
        name, _, value = raw.partition(":")
        name = name.lower().replace("_", "-")
        if name in ("trim-horizon", "latest") and not value:
            return cls(name)
        if name == "at-timestamp" and value:
            return cls(name, _parse_time(value.strip()))
        raise InvalidParameter(f"bad start position {text!r}: {_HINT}")

    def since(self, now: float | None = None) -> float:
        """The earliest arrival time a record may have to be read from this position."""
        if self.kind == "trim-horizon":
            return 0.0
        if self.kind == "latest":
            return time.time() if now is None else now
        assert self.timestamp is not None
        return self.timestamp


def _parse_time(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(f"bad at-timestamp {value!r}: {_HINT}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()
