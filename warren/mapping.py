"""Event source mappings: their spec, Lambda's states and rules, where a mapping starts reading."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from warren.aws import iso_time
from warren.errors import InvalidParameter
from warren.filter import FilterCriteria, parse_pattern

ACTIVE = frozenset({"Creating", "Enabling", "Enabled", "Updating"})
STATES = ("Creating", "Enabling", "Enabled", "Disabling", "Disabled", "Updating", "Deleting")
DEFAULT_BATCH = {"stream": 100, "queue": 10, "s3": 10, "schedule": 1, "table": 100, "mqtt": 1}
MAX_BATCH = 10_000
MAX_WINDOW_S = 300
STAT_FIELDS = ("read", "filtered", "invoked", "succeeded", "failed", "destination", "batches")
UPDATABLE = frozenset(
    {"function", "batch_size", "window_s", "filters", "report_item_failures", "bisect",
     "max_retries", "max_age_s", "on_failure", "max_concurrency", "parallelization_factor"}
)


SOURCE_HINT = (
    "a source is one of s3://BUCKET/PREFIX?endpoint=http://HOST:PORT&suffix=.jpg, "
    "redis+stream://HOST:PORT/DB/STREAM, amqp://USER:PASS@HOST:PORT/VHOST/QUEUE, "
    "schedule:rate(5 minutes), schedule:cron(0 12 * * ? *), "
    "postgres://USER:PASS@HOST:5432/DB?table=SCHEMA.NAME or mqtt://USER:PASS@HOST:1883/TOPIC/#"
)
SOURCE_KINDS = {
    "redis+stream": "stream",
    "rediss+stream": "stream",
    "amqp": "queue",
    "amqps": "queue",
    "s3": "s3",
    "schedule": "schedule",
    "postgres": "table",
    "postgresql": "table",
    "mqtt": "mqtt",
    "mqtts": "mqtt",
}


def source_kind(uri: str) -> str:
    """The kind of source a URI names: stream, queue, s3, schedule, table or mqtt;
    InvalidParameter if none."""
    scheme = uri.partition(":")[0].lower()
    if scheme not in SOURCE_KINDS or ":" not in uri:
        raise InvalidParameter(f"unknown source {uri!r}: {SOURCE_HINT}")
    return SOURCE_KINDS[scheme]


@dataclass(frozen=True)
class MappingSpec:
    uuid: str
    function: str                      # NAME or NAME:QUALIFIER, as given
    source: str
    kind: str                          # stream | queue | s3 | schedule | table | mqtt
    batch_size: int
    window_s: float = 0
    start_position: str = "trim-horizon"
    filters: tuple[str, ...] = ()
    report_item_failures: bool = False
    bisect: bool = False
    max_retries: int = -1              # -1: until the records expire (max_age)
    max_age_s: int = -1                # -1: no limit
    on_failure: str | None = None
    max_concurrency: int | None = None
    parallelization_factor: int = 1    # streams: batches in flight at once, ordered per key
    state: str = "Creating"
    state_reason: str = "User action"
    last_modified: str = field(default_factory=iso_time)
    revision: int = 1

    @property
    def function_name(self) -> str:
        return self.function.split(":", 1)[0]

    @property
    def qualifier(self) -> str | None:
        return self.function.split(":", 1)[1] if ":" in self.function else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MappingSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["filters"] = tuple(known.get("filters", ()))
        return cls(**known)


def validate(spec: MappingSpec) -> MappingSpec:
    """Check every field against Lambda's ranges; returns the spec or raises InvalidParameter."""
    if not 1 <= spec.batch_size <= MAX_BATCH:
        raise InvalidParameter(f"--batch-size must be 1..{MAX_BATCH}, got {spec.batch_size}")
    if spec.kind == "schedule" and spec.batch_size != 1:
        raise InvalidParameter("a schedule delivers one event per tick: --batch-size must be 1")
    if not 0 <= spec.window_s <= MAX_WINDOW_S:
        raise InvalidParameter(f"--window must be 0..{MAX_WINDOW_S} seconds, got {spec.window_s}")
    if not (spec.max_retries == -1 or 0 <= spec.max_retries <= 10_000):
        raise InvalidParameter("--max-retries must be -1 (until expiry) or 0..10000")
    if not (spec.max_age_s == -1 or 60 <= spec.max_age_s <= 604_800):
        raise InvalidParameter("--max-age must be -1 (no limit) or 60..604800 seconds")
    if spec.max_concurrency is not None and not 2 <= spec.max_concurrency <= 1000:
        raise InvalidParameter("--max-concurrency must be 2..1000 (Lambda's MaximumConcurrency)")
    if not 1 <= spec.parallelization_factor <= 10:
        raise InvalidParameter(
            f"--parallelization-factor must be 1..10, got {spec.parallelization_factor}"
        )
    if spec.parallelization_factor != 1 and spec.kind != "stream":
        raise InvalidParameter("--parallelization-factor applies to streams only")
    if spec.on_failure is not None and not spec.on_failure.startswith(
        ("amqp:///", "redis+stream:///")
    ):
        raise InvalidParameter("--on-failure must be amqp:///QUEUE or redis+stream:///STREAM")
    StartPosition.parse(spec.start_position)
    for pattern in spec.filters:
        parse_pattern(pattern)
    FilterCriteria(spec.filters)
    return spec

_POSITION_HINT = "use trim-horizon, latest or at-timestamp:<ISO8601 or epoch seconds>"


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
        raise InvalidParameter(f"bad start position {text!r}: {_POSITION_HINT}")

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
        raise InvalidParameter(f"bad at-timestamp {value!r}: {_POSITION_HINT}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()
