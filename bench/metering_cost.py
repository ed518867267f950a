"""What metering and metrics add to the worker's hot path, measured directly (the fleet benches
are too noisy on a shared machine to resolve a few per cent): CPU per finished chunk, and the
finishing Redis round trip with and without the meter's commands, against the real Redis.

    python bench/metering_cost.py   # writes bench/results/metering_cost.json
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from warren.observe.metrics import Registry  # noqa: E402
from warren.store.redis import execute_raw  # noqa: E402
from warren.store.usage import Metered, UsageMeter  # noqa: E402
from workers.metrics import WorkerMetrics  # noqa: E402


def per_call_us(fn, repeat: int = 7, number: int = 2000) -> float:  # type: ignore[no-untyped-def]
    """Median over `repeat` runs of the mean time of one call, in microseconds."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - started) / number * 1e6)
    return round(statistics.median(runs), 2)


def main() -> None:
    url = os.environ.get("WARREN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client: redis.Redis[bytes] = redis.Redis.from_url(url)
    prefix = f"benchmeter{uuid.uuid4().hex[:8]}"
    meter = UsageMeter(prefix)
    tapped = UsageMeter(prefix, tap=WorkerMetrics(Registry()).observe)
    one = [Metered("fn", "$LATEST", 128, 1.3, None, False)]
    hundred = [Metered("fn", "$LATEST", 128, 1.0 + n / 50, None, n % 10 == 0) for n in range(100)]
    base = [
        ("XADD", f"{prefix}:logs:fn", "MAXLEN", "~", 10000, "*", "rid", "r", "ver", "$LATEST",
         "log", "START RequestId: r Version: $LATEST\nEND RequestId: r\nREPORT RequestId: r\t"),
        ("ZREM", f"{prefix}:sem:pool", "fn|r"),
        ("HINCRBY", f"{prefix}:stats:fn", "invocations", 1),
    ]
    results: dict[str, object] = {
        "cpu_us_per_chunk": {
            "meter_1_run": per_call_us(lambda: meter.commands(one)),
            "meter_and_metrics_1_run": per_call_us(lambda: tapped.commands(one)),
            "meter_100_runs": per_call_us(lambda: meter.commands(hundred), number=200),
            "meter_and_metrics_100_runs": per_call_us(lambda: tapped.commands(hundred),
                                                      number=200),
        },
    }
    extra = meter.commands(one)
    # Alternating short runs, medians: the machine's load drifts between runs.
    plain, metered = [], []
    for _ in range(25):
        plain.append(per_call_us(lambda: execute_raw(client, base), repeat=1, number=200))
        metered.append(
            per_call_us(lambda: execute_raw(client, base + extra), repeat=1, number=200)
        )
    round_trip = {
        "base_us": statistics.median(plain),
        "base_plus_meter_us": statistics.median(metered),
        "meter_commands": len(extra),
        "base_commands": len(base),
    }
    results["finishing_round_trip_1_run"] = round_trip
    results["load_avg"] = os.getloadavg()
    results["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    out = ROOT / "bench" / "results" / "metering_cost.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
