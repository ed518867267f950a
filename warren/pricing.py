"""What metered usage would cost on AWS Lambda at list prices (warren/data/lambda_prices.json).

Lambda's free tier and its duration tiers are monthly; over a window of another length both
are scaled to the window (30 days = one month, 30.4375 days exactly), which is what a
month-by-month bill would average to. INIT is billed as duration (Lambda does since 2025-08).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from warren.errors import ConfigError
from warren.usage import Usage, bucket_upper_ms

ARCHITECTURES = ("x86_64", "arm64")
MONTH_S = 30.4375 * 86400


@dataclass(frozen=True)
class Tier:
    up_to_gb_seconds: float | None  # None: no upper bound
    usd: float


@dataclass(frozen=True)
class Prices:
    read_on: str
    region: str
    request_usd: float
    free_requests: int
    free_gb_seconds: float
    tiers: dict[str, tuple[Tier, ...]]

    @classmethod
    def load(cls) -> Prices:
        text = resources.files("warren").joinpath("data/lambda_prices.json").read_text()
        return cls.parse(json.loads(text))

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Prices:
        try:
            return cls(
                read_on=str(data["read_on"]),
                region=str(data["region"]),
                request_usd=float(data["request_usd"]),
                free_requests=int(data["free_tier"]["requests"]),
                free_gb_seconds=float(data["free_tier"]["gb_seconds"]),
                tiers={
                    arch: tuple(Tier(t["up_to_gb_seconds"], float(t["usd"])) for t in tiers)
                    for arch, tiers in data["duration_usd_per_gb_second"].items()
                },
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"the Lambda price file is malformed: {exc!r}") from None

    def duration_usd(self, gb_seconds: float, arch: str, months: float) -> float:
        """Tiered duration charge for `gb_seconds` used in `months` months."""
        usd, below = 0.0, 0.0
        for tier in self.tiers[arch]:
            top = None if tier.up_to_gb_seconds is None else tier.up_to_gb_seconds * months
            share = max(0.0, (gb_seconds if top is None else min(gb_seconds, top)) - below)
            usd += share * tier.usd
            if top is None or gb_seconds <= top:
                break
            below = top
        return usd


def cost_report(
    rows: dict[str, Usage], prices: Prices, *, arch: str, free_tier: bool, window_s: float
) -> dict[str, Any]:
    """The `warren cost --output json` document (keys in docs/operate.md).

    The fleet's bill is computed on its totals (tiers and free tier apply account-wide); each
    function's `lambda_usd` is its share of it, in proportion to its requests (request charge)
    and its GB-seconds (duration charge), so the functions add up to the fleet.
    """
    if arch not in prices.tiers:
        raise ConfigError(f"no Lambda prices for architecture {arch!r}")
    months = window_s / MONTH_S
    total = Usage()
    for usage in rows.values():
        total.merge(usage)
    billed_gbs = total.gb_seconds + total.init_gb_seconds
    free_req = prices.free_requests * months if free_tier else 0.0
    free_gbs = prices.free_gb_seconds * months if free_tier else 0.0
    request_usd = max(0.0, total.requests - free_req) * prices.request_usd
    duration_usd = prices.duration_usd(max(0.0, billed_gbs - free_gbs), arch, months)
    functions = {}
    for name, usage in sorted(rows.items()):
        gbs = usage.gb_seconds + usage.init_gb_seconds
        share_req = usage.requests / total.requests if total.requests else 0.0
        share_gbs = gbs / billed_gbs if billed_gbs else 0.0
        functions[name] = {
            "requests": usage.requests,
            "gb_seconds": round(usage.gb_seconds, 6),
            "init_gb_seconds": round(usage.init_gb_seconds, 6),
            "lambda_usd": round(request_usd * share_req + duration_usd * share_gbs, 6),
        }
    return {
        "requests": total.requests,
        "gb_seconds": round(total.gb_seconds, 6),
        "init_gb_seconds": round(total.init_gb_seconds, 6),
        "request_usd": round(request_usd, 6),
        "duration_usd": round(duration_usd, 6),
        "lambda_usd": round(request_usd + duration_usd, 6),
        "architecture": arch,
        "free_tier": free_tier,
        "window_days": round(window_s / 86400, 4),
        "prices": {"region": prices.region, "read_on": prices.read_on},
        "functions": functions,
    }


def busy_seconds(usage: Usage) -> float:
    """Sandbox-busy seconds, estimated from the duration histogram (each bucket's middle)."""
    total_ms = 0.0
    for index, count in usage.buckets.items():
        upper = bucket_upper_ms(index)
        lower = 0.0 if index == 0 else bucket_upper_ms(index - 1)
        total_ms += count * (upper * lower) ** 0.5 if lower else count * upper / 2
    return total_ms / 1000
