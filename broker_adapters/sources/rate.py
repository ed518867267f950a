"""EventBridge's rate(value unit) schedules, and the parser for any schedule expression."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

from broker_adapters.sources.cron import CronExpression
from warren.errors import InvalidParameter

_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"rate\(\s*(\S+)\s+(\S+)\s*\)$")
_CRON = re.compile(r"cron\((.*)\)$")
_HINT = (
    "a schedule is rate(VALUE UNIT) with UNIT minute|hour|day (singular for 1, plural above), "
    "e.g. schedule:rate(5 minutes), or schedule:cron(0 12 * * ? *)"
)


class ScheduleExpression(Protocol):
    @property
    def text(self) -> str: ...

    def next_after(self, epoch: float) -> float | None:
        """The first firing time strictly after `epoch`, or None if there is none."""
        ...


@dataclass(frozen=True)
class RateExpression:
    """Fires every `period_s`, counted from `anchor_s` (EventBridge counts from rule creation)."""

    text: str
    period_s: int
    anchor_s: float = 0.0

    @classmethod
    def parse(cls, text: str, anchor_s: float = 0.0) -> RateExpression:
        match = _RATE.match(text.strip())
        if not match:
            raise InvalidParameter(f"bad schedule {text!r}: {_HINT}")
        value_text, unit = match.groups()
        if not value_text.isdigit() or int(value_text) < 1:
            raise InvalidParameter(f"bad schedule {text!r}: the value must be a positive whole "
                                   f"number; {_HINT}")
        value = int(value_text)
        singular = unit[:-1] if unit.endswith("s") else unit
        if singular not in _UNITS or (value == 1) != (unit == singular):
            raise InvalidParameter(f"bad schedule {text!r}: {_HINT}")
        return cls(text=text.strip(), period_s=value * _UNITS[singular], anchor_s=anchor_s)

    def next_after(self, epoch: float) -> float | None:
        steps = math.floor((epoch - self.anchor_s) / self.period_s) + 1
        return self.anchor_s + steps * self.period_s


def parse_schedule(text: str, anchor_s: float = 0.0) -> ScheduleExpression:
    """`rate(...)` or `cron(...)`; InvalidParameter with a hint for anything else."""
    stripped = text.strip()
    if stripped.startswith("rate("):
        return RateExpression.parse(stripped, anchor_s)
    match = _CRON.match(stripped)
    if match:
        return CronExpression.parse(match.group(1))
    raise InvalidParameter(f"bad schedule {text!r}: {_HINT}")
