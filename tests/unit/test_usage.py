"""Usage arithmetic, the meter's commands and Lambda's price list, without services."""

from __future__ import annotations

import random

import pytest

from warren.pricing import Prices, cost_report
from warren.store.usage import Metered, UsageMeter, billed_ms, fold
from warren.usage import Usage, bucket_of, bucket_upper_ms, percentile_ms


def test_bucket_bounds_hold_their_durations() -> None:
    for ms in (0.2, 1.0, 1.01, 3.7, 50.0, 999.9, 900_000.0):
        index = bucket_of(ms)
        assert ms <= bucket_upper_ms(index) * (1 + 1e-12)
        assert index == 0 or ms > bucket_upper_ms(index - 1)


def test_percentiles_from_the_histogram_are_within_five_percent() -> None:
    rng = random.Random(7)
    durations = [rng.lognormvariate(3, 1.2) for _ in range(20_000)]
    buckets: dict[int, int] = {}
    for ms in durations:
        buckets[bucket_of(ms)] = buckets.get(bucket_of(ms), 0) + 1
    ordered = sorted(durations)
    for q in (0.5, 0.99):
        true = ordered[int(q * len(ordered)) - 1]
        estimate = percentile_ms(buckets, q)
        assert estimate is not None
        assert abs(estimate - true) / true < 0.05


def test_empty_histogram_has_no_percentile() -> None:
    assert percentile_ms({}, 0.5) is None


def test_billed_duration_rounds_up_to_the_millisecond_and_is_at_least_one() -> None:
    assert [billed_ms(x) for x in (0.01, 1.0, 1.0001, 12.5, 40.0)] == [1, 1, 2, 13, 40]


def test_meter_adds_buckets_memory_init_and_errors_in_one_hash_per_hour() -> None:
    meter = UsageMeter("px", retention_s=86400)
    runs = [
        Metered("f", "$LATEST", 256, 10.2, 120.4, False),
        Metered("f", "$LATEST", 256, 10.3, None, True),
        Metered("g", "3", 1024, 0.5, None, False),
    ]
    commands = meter.commands(runs, now=7200.5)
    hincr = {c[2]: c[3] for c in commands if c[0] == "HINCRBY" and c[1] == "px:usage:2"}
    assert {c[1] for c in commands} == {"px:usage:2", "px:usage:m:120"}
    minute = {c[2]: c[3] for c in commands if c[0] == "HINCRBY" and c[1] == "px:usage:m:120"}
    assert minute == {"f|req": 2, "f|ms": 22, "f|err": 1, "g|req": 1, "g|ms": 1}
    assert hincr["f|$LATEST|mbms"] == (11 + 11) * 256
    assert hincr["f|$LATEST|imbms"] == 121 * 256
    assert hincr["f|$LATEST|cold"] == 1 and hincr["f|$LATEST|err"] == 1
    assert hincr[f"f|$LATEST|d{bucket_of(10.2)}"] == 2
    assert hincr["g|3|mbms"] == 1024 and "g|3|err" not in hincr
    # The expiry goes out once per hour per process: the hour's end plus the retention.
    assert ("EXPIREAT", "px:usage:2", 3 * 3600 + 86400) in commands
    assert not any(c[0] == "EXPIREAT" for c in meter.commands(runs, now=7210))
    assert any(c[0] == "EXPIREAT" for c in meter.commands(runs, now=3 * 3600 + 1))


def test_fold_adds_hours_per_function_and_version() -> None:
    hour = {b"f|1|d10": b"3", b"f|1|mbms": b"1024000", b"f|1|err": b"1", b"h|$LATEST|d2": b"1"}
    rows = fold([hour, hour], "f")
    assert [(r.function, r.version) for r in rows] == [("f", "1")]
    usage = rows[0].usage
    assert (usage.requests, usage.errors, usage.gb_seconds) == (6, 2, 2.0)


def _usage(requests: int, gb_seconds: float) -> Usage:
    usage = Usage(mb_ms=int(gb_seconds * 1024 * 1000))
    usage.buckets[10] = requests
    return usage


def test_cost_without_free_tier_is_requests_plus_gb_seconds_at_list_price() -> None:
    prices = Prices.load()
    report = cost_report(
        {"a": _usage(3_000_000, 100_000.0), "b": _usage(1_000_000, 300_000.0)},
        prices, arch="x86_64", free_tier=False, window_s=30.4375 * 86400,
    )
    assert report["requests"] == 4_000_000
    assert report["lambda_usd"] == pytest.approx(4_000_000 * 2e-7 + 400_000 * 0.0000166667)
    shares = sum(f["lambda_usd"] for f in report["functions"].values())
    assert shares == pytest.approx(report["lambda_usd"], abs=1e-5)


def test_free_tier_covers_a_month_of_small_use_and_is_scaled_to_the_window() -> None:
    prices = Prices.load()
    month = 30.4375 * 86400
    small = {"a": _usage(900_000, 390_000.0)}
    assert cost_report(small, prices, arch="x86_64", free_tier=True, window_s=month)[
        "lambda_usd"
    ] == 0
    # Over one day, only a thirtieth of the allowance applies.
    day = cost_report(small, prices, arch="arm64", free_tier=True, window_s=86400)
    expected_req = (900_000 - 1_000_000 * 86400 / month) * 2e-7
    expected_gbs = (390_000 - 400_000 * 86400 / month) * 0.0000133334
    assert day["lambda_usd"] == pytest.approx(expected_req + expected_gbs, rel=1e-6)


def test_duration_tiers_apply_above_six_billion_gb_seconds_on_x86() -> None:
    prices = Prices.load()
    usd = prices.duration_usd(7e9, "x86_64", months=1)
    assert usd == pytest.approx(6e9 * 0.0000166667 + 1e9 * 0.000015)


def test_price_file_says_when_it_was_read() -> None:
    prices = Prices.load()
    assert prices.read_on and set(prices.tiers) == {"x86_64", "arm64"}
