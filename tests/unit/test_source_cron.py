"""Schedule expressions as EventBridge defines them: rate(value unit) and six-field cron, in UTC."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from broker_adapters.sources.rate import RateExpression, parse_schedule
from warren.errors import InvalidParameter


def _t(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def _fires(expression: str, start: str, n: int) -> list[str | None]:
    schedule = parse_schedule(expression)
    out, at = [], _t(start)
    for _ in range(n):
        nxt = schedule.next_after(at)
        out.append(_iso(nxt))
        if nxt is None:
            break
        at = nxt
    return out


@pytest.mark.parametrize(
    ("text", "period"),
    [("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(1 hour)", 3600),
     ("rate(2 hours)", 7200), ("rate(1 day)", 86400), ("rate(7 days)", 604800)],
)
def test_rate_periods(text, period):
    rate = parse_schedule(text)
    assert isinstance(rate, RateExpression) and rate.period_s == period


@pytest.mark.parametrize(
    "text",
    ["rate(1 minutes)", "rate(5 minute)", "rate(0 minutes)", "rate(-1 minutes)",
     "rate(1.5 hours)", "rate(5 seconds)", "rate(5)", "rate(five minutes)", "every 5 minutes"],
)
def test_bad_rates_are_refused_with_a_hint(text):
    with pytest.raises(InvalidParameter, match="rate\\(VALUE UNIT\\)"):
        parse_schedule(text)


def test_rate_ticks_count_from_the_anchor():
    rate = RateExpression.parse("rate(5 minutes)", anchor_s=_t("2026-01-01 00:02:00"))
    assert _iso(rate.next_after(_t("2026-01-01 10:00:00"))) == "2026-01-01 10:02"
    assert _iso(rate.next_after(_t("2026-01-01 10:02:00"))) == "2026-01-01 10:07"


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        ("cron(0 12 * * ? *)", "2026-03-01 12:00",
         ["2026-03-02 12:00", "2026-03-03 12:00"]),
        ("cron(0/15 * * * ? *)", "2026-03-01 10:07",
         ["2026-03-01 10:15", "2026-03-01 10:30", "2026-03-01 10:45", "2026-03-01 11:00"]),
        ("cron(1/10 * * * ? *)", "2026-03-01 10:00",
         ["2026-03-01 10:01", "2026-03-01 10:11"]),
        ("cron(15 10 ? * MON-FRI *)", "2026-03-06 11:00",  # a Friday
         ["2026-03-09 10:15", "2026-03-10 10:15"]),
        ("cron(0 8 1 * ? *)", "2026-01-15 00:00", ["2026-02-01 08:00", "2026-03-01 08:00"]),
        ("cron(0 0 L * ? *)", "2026-01-31 00:00", ["2026-02-28 00:00", "2026-03-31 00:00"]),
        ("cron(0 9 ? * 3#2 *)", "2026-03-01 00:00", ["2026-03-10 09:00", "2026-04-14 09:00"]),
        ("cron(0 18 ? * 6L *)", "2026-03-01 00:00", ["2026-03-27 18:00", "2026-04-24 18:00"]),
        ("cron(0 0 1W * ? *)", "2026-02-01 00:00",  # 1 Feb and 1 Mar 2026 are Sundays
         ["2026-02-02 00:00", "2026-03-02 00:00", "2026-04-01 00:00"]),
        ("cron(0 0 1W * ? *)", "2025-10-31 00:00", ["2025-11-03 00:00"]),  # 1 Nov: Saturday
        ("cron(0 0 LW * ? *)", "2026-01-01 00:00",  # 31 Jan 2026 is a Saturday
         ["2026-01-30 00:00", "2026-02-27 00:00"]),
        ("cron(30 23 31 DEC ? 2026-2027)", "2026-01-01 00:00",
         ["2026-12-31 23:30", "2027-12-31 23:30", None]),
        ("cron(0 10 ? JAN,JUL SUN 2026)", "2026-06-30 00:00",
         ["2026-07-05 10:00", "2026-07-12 10:00"]),
        ("cron(59 23 29 2 ? *)", "2026-01-01 00:00", ["2028-02-29 23:59"]),
        ("cron(0 12 ? * L *)", "2026-03-01 00:00", ["2026-03-07 12:00"]),  # Saturday
    ],
)
def test_cron_firing_times(expression, start, expected):
    assert _fires(expression, start, len(expected)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "cron(0 12 * * *)",            # five fields
        "cron(0 12 * * * *)",          # both day fields given
        "cron(0 12 ? * ? *)",          # neither day field given
        "cron(60 12 * * ? *)",         # minute out of range
        "cron(0 24 * * ? *)",          # hour out of range
        "cron(0 12 32 * ? *)",
        "cron(0 12 * 13 ? *)",
        "cron(0 12 ? * 8 *)",
        "cron(0 12 * * ? 1969)",
        "cron(0 12 ? * 3#1,6#3 *)",    # '#' takes one expression
        "cron(0/0 * * * ? *)",
        "cron(30-10 * * * ? *)",       # backwards range
        "cron(0 12 * FOO ? *)",
        "cron(a b c d e f)",
        "cron 0 12 * * ? *",
    ],
)
def test_bad_cron_expressions_are_refused_with_a_hint(text):
    with pytest.raises(InvalidParameter, match="cron"):
        parse_schedule(text)
