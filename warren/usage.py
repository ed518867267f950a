"""Usage arithmetic: the duration histogram's buckets, percentiles from it, and GB-seconds.

The histogram has eight buckets per doubling (each about 9 % wide), so a percentile read from it
is within about 4.5 % of the true value, from 1 ms to Lambda's 900 s limit in 80 buckets.
Bucket i holds durations in (2^((i-1)/8), 2^(i/8)] ms; bucket 0 everything up to 1 ms.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

PER_DOUBLING = 8
MB_MS_PER_GB_S = 1024 * 1000


def bucket_of(duration_ms: float) -> int:
    if duration_ms <= 1.0:
        return 0
    return math.ceil(PER_DOUBLING * math.log2(duration_ms))


def bucket_upper_ms(index: int) -> float:
    return float(2.0 ** (index / PER_DOUBLING))


def percentile_ms(buckets: dict[int, int], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) of a bucket histogram; None when it is empty.

    Interpolated geometrically inside the bucket the rank falls in, as the buckets are.
    """
    total = sum(buckets.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index in sorted(buckets):
        count = buckets[index]
        if count and seen + count >= rank:
            upper = bucket_upper_ms(index)
            lower = 0.0 if index == 0 else bucket_upper_ms(index - 1)
            share = (rank - seen) / count
            if lower == 0.0:
                return upper * share
            return float(lower * (upper / lower) ** share)
        seen += count
    return bucket_upper_ms(max(buckets))


@dataclass
class Usage:
    """Summed usage of one function version (or of anything added together)."""

    mb_ms: int = 0
    init_mb_ms: int = 0
    cold_starts: int = 0
    errors: int = 0
    buckets: Counter[int] = field(default_factory=Counter)

    def add(self, kind: str, value: int) -> None:
        """Add one hash field's value (`d<i>`, `mbms`, `imbms`, `cold`, `err`)."""
        if kind.startswith("d") and kind[1:].isdigit():
            self.buckets[int(kind[1:])] += value
        elif kind == "mbms":
            self.mb_ms += value
        elif kind == "imbms":
            self.init_mb_ms += value
        elif kind == "cold":
            self.cold_starts += value
        elif kind == "err":
            self.errors += value

    def merge(self, other: Usage) -> None:
        self.mb_ms += other.mb_ms
        self.init_mb_ms += other.init_mb_ms
        self.cold_starts += other.cold_starts
        self.errors += other.errors
        self.buckets.update(other.buckets)

    @property
    def requests(self) -> int:
        return sum(self.buckets.values())

    @property
    def gb_seconds(self) -> float:
        return self.mb_ms / MB_MS_PER_GB_S

    @property
    def init_gb_seconds(self) -> float:
        return self.init_mb_ms / MB_MS_PER_GB_S

    def summary(self) -> dict[str, Any]:
        """The `warren usage --output json` keys of one row (docs/operate.md)."""
        p50 = percentile_ms(self.buckets, 0.50)
        p99 = percentile_ms(self.buckets, 0.99)
        return {
            "requests": self.requests,
            "errors": self.errors,
            "gb_seconds": round(self.gb_seconds, 6),
            "init_gb_seconds": round(self.init_gb_seconds, 6),
            "cold_starts": self.cold_starts,
            "duration_p50_ms": None if p50 is None else round(p50, 2),
            "duration_p99_ms": None if p99 is None else round(p99, 2),
        }
