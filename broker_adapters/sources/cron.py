"""EventBridge's six-field cron(min hour day-of-month month day-of-week year), evaluated in UTC."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from warren.errors import InvalidParameter

_MONTHS = {n: i for i, n in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1)}
_DAYS = {n: i for i, n in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}
_HINT = (
    "cron takes six fields: minutes hours day-of-month month day-of-week year, with ? in one "
    "of the two day fields, e.g. cron(0 12 * * ? *) or cron(0/15 8-17 ? * MON-FRI *)"
)

DaySet = Callable[[int, int], set[int]]  # (year, month) -> days of that month


def _bad(text: str, why: str) -> InvalidParameter:
    return InvalidParameter(f"bad cron expression {text!r}: {why}; {_HINT}")


def _number(token: str, low: int, high: int, names: dict[str, int], text: str) -> int:
    value = names.get(token.upper()) if names else None
    if value is None:
        if not token.isdigit():
            raise _bad(text, f"{token!r} is not a value")
        value = int(token)
    if not low <= value <= high:
        raise _bad(text, f"{token} is outside {low}-{high}")
    return value


def _values(
    spec: str, low: int, high: int, text: str, names: dict[str, int] | None = None
) -> set[int]:
    """`,` lists of `*`, `a`, `a-b`, each optionally `/step`."""
    out: set[int] = set()
    for item in spec.split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise _bad(text, f"bad increment in {item!r}")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first = _number(a, low, high, names or {}, text)
            last = _number(b, low, high, names or {}, text)
            if first > last:
                raise _bad(text, f"range {base!r} runs backwards")
        else:
            first = _number(base, low, high, names or {}, text)
            last = high if step_text else first
        out.update(range(first, last + 1, step))
    return out


def _weekday(year: int, month: int, day: int) -> int:
    """EventBridge's day of the week: 1 = Sunday ... 7 = Saturday."""
    return (date(year, month, day).weekday() + 1) % 7 + 1


def _nearest_weekday(year: int, month: int, day: int) -> int:
    last = calendar.monthrange(year, month)[1]
    day = min(day, last)
    wd = _weekday(year, month, day)
    if wd == 7:  # Saturday: Friday, unless that leaves the month
        return day - 1 if day > 1 else day + 2
    if wd == 1:  # Sunday: Monday, unless that leaves the month
        return day + 1 if day < last else day - 2
    return day


def _day_of_month(spec: str, text: str) -> DaySet:
    parts: list[DaySet] = []
    plain: list[str] = []
    for item in spec.split(","):
        upper = item.upper()
        if upper == "L":
            parts.append(lambda y, m: {calendar.monthrange(y, m)[1]})
        elif upper == "LW":
            parts.append(lambda y, m: {_nearest_weekday(y, m, calendar.monthrange(y, m)[1])})
        elif upper.endswith("W"):
            target = _number(upper[:-1], 1, 31, {}, text)

            def near(y: int, m: int, t: int = target) -> set[int]:
                return {_nearest_weekday(y, m, t)}

            parts.append(near)
        else:
            plain.append(item)
    if plain:
        days = _values(",".join(plain), 1, 31, text)
        parts.append(lambda y, m: {d for d in days if d <= calendar.monthrange(y, m)[1]})
    return lambda y, m: set().union(*(p(y, m) for p in parts))


def _day_of_week(spec: str, text: str) -> DaySet:
    upper = spec.upper()
    if "#" in upper:
        if "," in upper:
            raise _bad(text, "a day-of-week with # takes a single expression")
        wd_text, _, nth_text = upper.partition("#")
        wd = _number(wd_text, 1, 7, _DAYS, text)
        nth = _number(nth_text, 1, 5, {}, text)

        def nth_weekday(y: int, m: int) -> set[int]:
            last = calendar.monthrange(y, m)[1]
            hits = [d for d in range(1, last + 1) if _weekday(y, m, d) == wd]
            return {hits[nth - 1]} if len(hits) >= nth else set()

        return nth_weekday
    if upper.endswith("L") and upper != "L":
        wd = _number(upper[:-1], 1, 7, _DAYS, text)

        def last_weekday(y: int, m: int) -> set[int]:
            last = calendar.monthrange(y, m)[1]
            return {max(d for d in range(last - 6, last + 1) if _weekday(y, m, d) == wd)}

        return last_weekday
    weekdays = {7} if upper == "L" else _values(upper, 1, 7, text, _DAYS)
    return lambda y, m: {
        d for d in range(1, calendar.monthrange(y, m)[1] + 1) if _weekday(y, m, d) in weekdays
    }


@dataclass(frozen=True)
class CronExpression:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int]
    days: DaySet = field(compare=False, repr=False)

    @classmethod
    def parse(cls, fields_text: str) -> CronExpression:
        """`fields_text` is what stands inside cron(...)."""
        text = f"cron({fields_text})"
        fields = fields_text.split()
        if len(fields) != 6:
            raise _bad(text, f"{len(fields)} fields instead of 6")
        minute, hour, dom, month, dow, year = fields
        if (dom == "?") == (dow == "?"):
            raise _bad(text, "exactly one of day-of-month and day-of-week must be ?")
        return cls(
            text=text,
            minutes=frozenset(_values(minute, 0, 59, text)),
            hours=frozenset(_values(hour, 0, 23, text)),
            months=frozenset(_values(month, 1, 12, text, _MONTHS)),
            years=frozenset(_values(year, 1970, 2199, text)),
            days=_day_of_week(dow, text) if dom == "?" else _day_of_month(dom, text),
        )

    def next_after(self, epoch: float) -> float | None:
        """The first firing time strictly after `epoch` (seconds), or None if there is none."""
        moment = datetime.fromtimestamp(epoch, tz=timezone.utc).replace(second=0, microsecond=0)
        moment += timedelta(minutes=1)
        year, month, day, hour, minute = (
            moment.year, moment.month, moment.day, moment.hour, moment.minute
        )
        while year <= 2199:
            if year not in self.years:
                year, month, day, hour, minute = year + 1, 1, 1, 0, 0
                continue
            if month not in self.months:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                day, hour, minute = 1, 0, 0
                continue
            day_hit = min((d for d in self.days(year, month) if d >= day), default=None)
            if day_hit is None:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                day, hour, minute = 1, 0, 0
                continue
            if day_hit != day:
                day, hour, minute = day_hit, 0, 0
            hour_hit = min((h for h in self.hours if h >= hour), default=None)
            minute_hit = min((m for m in self.minutes if m >= minute), default=None)
            if hour_hit is None:
                nxt = date(year, month, day) + timedelta(days=1)
                year, month, day, hour, minute = nxt.year, nxt.month, nxt.day, 0, 0
                continue
            if hour_hit != hour:
                hour, minute = hour_hit, 0
                minute_hit = min(self.minutes)
            if minute_hit is None:
                hour, minute = hour + 1, 0
                if hour == 24:
                    nxt = date(year, month, day) + timedelta(days=1)
                    year, month, day, hour = nxt.year, nxt.month, nxt.day, 0
                continue
            return datetime(year, month, day, hour, minute_hit, tzinfo=timezone.utc).timestamp()
        return None
