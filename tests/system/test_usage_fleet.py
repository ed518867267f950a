"""Metered usage through a real worker: what `warren usage` and `warren cost` report."""

from __future__ import annotations

import re

import orjson
import pytest
from support.fleet import Fleet

pytestmark = pytest.mark.slow

REPORT = re.compile(
    r"Billed Duration: (\d+) ms.*?Memory Size: (\d+) MB(?:.*?Init Duration: ([\d.]+) ms)?"
)


def _billed(fleet: Fleet, function: str) -> tuple[int, int, int]:
    """MB-ms of duration, MB-ms of init, and REPORT lines, from the function's own logs."""
    mb_ms = init_mb_ms = reports = 0
    for entry in fleet.client_logs(function):
        for match in REPORT.finditer(entry.text):
            billed, memory, init = int(match[1]), int(match[2]), match[3]
            reports += 1
            mb_ms += billed * memory
            if init:
                whole = float(init)
                init_mb_ms += max(1, int(whole) + (whole != int(whole))) * memory
    return mb_ms, init_mb_ms, reports


def test_usage_and_cost_meter_every_invocation_as_the_report_lines_bill_it(fleet: Fleet) -> None:
    # Given two functions of different memory sizes, one of which always fails
    fleet.function("metered", handler="app.span", memory_mb=256)
    fleet.function("failing", handler="app.fail", memory_mb=512)
    fleet.worker(slots=2)
    # When they are invoked synchronously
    for n in range(6):
        fleet.client.invoke("metered", {"sleep": 0.02, "n": n})
    for n in range(3):
        fleet.client.invoke("failing", {"n": n})
    # Then `warren usage` counts requests and errors, and GB-seconds exactly as REPORT bills them
    out = fleet.cli("usage", "--since", "2h", "-o", "json")
    assert out.returncode == 0, out.stderr
    usage = orjson.loads(out.stdout)
    assert usage["requests"] == 9 and usage["errors"] == 3
    metered = usage["functions"]["metered"]
    assert metered["requests"] == 6 and metered["errors"] == 0
    mb_ms, init_mb_ms, reports = _billed(fleet, "metered")
    assert reports == 6
    assert metered["gb_seconds"] == pytest.approx(mb_ms / 1024 / 1000, abs=1e-6)
    assert metered["init_gb_seconds"] == pytest.approx(init_mb_ms / 1024 / 1000, abs=1e-6)
    assert metered["cold_starts"] == 1
    assert metered["versions"]["$LATEST"]["requests"] == 6
    # The handler sleeps 20 ms: the percentiles sit there, within the histogram's 9 % buckets
    assert 20 / 1.1 <= metered["duration_p50_ms"] <= 40  # one 9 % bucket below, at most
    assert metered["duration_p50_ms"] <= metered["duration_p99_ms"]
    assert usage["functions"]["failing"]["errors"] == 3
    # And one function alone
    one = orjson.loads(fleet.cli("usage", "failing", "--since", "1h", "-o", "json").stdout)
    assert list(one["functions"]) == ["failing"] and one["requests"] == 3
    # And `warren cost` without the free tier is list price on the same figures
    out = fleet.cli("cost", "--since", "2h", "--no-free-tier", "--arch", "arm64", "-o", "json")
    assert out.returncode == 0, out.stderr
    cost = orjson.loads(out.stdout)
    gbs = cost["gb_seconds"] + cost["init_gb_seconds"]
    assert cost["requests"] == 9
    assert cost["lambda_usd"] == pytest.approx(9 * 2e-7 + gbs * 0.0000133334, abs=1e-6)
    assert set(cost["functions"]) == {"metered", "failing"}
    assert cost["fleet"]["slots_now"] == 2 and cost["fleet"]["busy_slot_seconds"] > 0.1
    # And with the free tier this little usage costs nothing
    free = orjson.loads(fleet.cli("cost", "--since", "2h", "-o", "json").stdout)
    assert free["lambda_usd"] == 0


def test_usage_of_an_unknown_function_is_not_found(fleet: Fleet) -> None:
    out = fleet.cli("usage", "nosuch", "-o", "json")
    assert out.returncode != 0
    assert b"not found" in out.stderr.lower()
