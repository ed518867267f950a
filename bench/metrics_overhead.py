"""Metrics on vs off, on the same machine at the same time: what /metrics costs the hot paths
(issue 14: within 3 %). Writes bench/results/metrics_overhead.json.

    python bench/metrics_overhead.py [--rounds 5] [--source-rounds 3]

- sync: two fleets up at once, one serving /metrics (router and worker, scraped every 5 s as
  Prometheus would: BENCH_METRICS_PORT), one without, called in alternating blocks
  (bench/sync_ab.py), `--rounds` times;
- async: bench/fleet.py's 10,000 `Event` invocations, on and off alternately;
- sources: bench/sources.py's fleet runs (`--fleet-only`), on and off alternately.
A pair's order alternates between rounds so drift in the machine's load hits both alike. The
usage meter runs in both (it is not optional): its own cost is bench/metering_cost.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from fleet import measure_async  # noqa: E402
from sync_ab import measure  # noqa: E402

SOURCE_RUNS = ("stream_batch100", "stream_batch100_pf4", "queue_batch100", "queue_batch100_mc10")
METRICS = {"BENCH_METRICS_PORT": "19180"}


def sync_once(amqp: str, redis: str, runs: int) -> dict[str, dict[str, float]]:
    result = measure(amqp, redis, {"off": {}, "on": METRICS}, [], runs, block=50)
    return {label: {"sync_p50_ms": row["sync_p50_ms"], "sync_p99_ms": row["sync_p99_ms"]}
            for label, row in result.items()}


def sources_once(env: dict[str, str], quick: bool) -> dict[str, float]:
    subprocess.run(
        [sys.executable, "bench/sources.py", "--fleet-only", *(["--quick"] if quick else [])],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )
    fleet = json.loads((ROOT / "bench" / "results" / "sources.json").read_text())["fleet"]
    out = {f"{run}_per_s": float(fleet[run]["records_per_s"]) for run in SOURCE_RUNS}
    out.update(
        {f"{run}_worker_cpu_us": float(fleet[run]["cpu_us_per_record"]["worker"])
         for run in SOURCE_RUNS}
    )
    return out


def compare(samples: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in samples["off"][0]:
        off = statistics.median(s[key] for s in samples["off"])
        on = statistics.median(s[key] for s in samples["on"])
        out[key] = {"off": off, "on": on,
                    "change_pct": round((on - off) / off * 100, 2) if off else None}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amqp-url", default=os.environ.get(
        "WARREN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--redis-url", default=os.environ.get(
        "WARREN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sync-runs", type=int, default=2000)
    parser.add_argument("--async-count", type=int, default=10_000)
    parser.add_argument("--source-rounds", type=int, default=3)
    parser.add_argument("--skip-sources", action="store_true")
    parser.add_argument("--quick-sources", action="store_true",
                        help="bench/sources.py --quick (runs of 20,000 records: noisier)")
    args = parser.parse_args()
    started = time.time()
    results: dict[str, Any] = {"load_avg_start": os.getloadavg()}
    sync: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    asyncs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for round_ in range(args.rounds):
        for label, row in sync_once(args.amqp_url, args.redis_url, args.sync_runs).items():
            sync[label].append(row)
        order = [("off", {}), ("on", METRICS)]
        for label, env in order if round_ % 2 == 0 else order[::-1]:
            row = measure_async(args.amqp_url, args.redis_url, args.async_count, env)
            asyncs[label].append({"async_per_s": row["async_per_s"]})
        print("round", round_, sync["off"][-1], sync["on"][-1], asyncs["off"][-1],
              asyncs["on"][-1], flush=True)
    results["sync"] = {"rounds": args.rounds, "median": compare(sync), "samples": sync}
    results["async"] = {"rounds": args.rounds, "median": compare(asyncs), "samples": asyncs}
    if not args.skip_sources:
        sources: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        env_off = {k: v for k, v in os.environ.items() if k != "BENCH_METRICS_PORT"}
        env_on = {**os.environ, **METRICS}
        for round_ in range(args.source_rounds):
            order = [("off", env_off), ("on", env_on)]
            for label, env in order if round_ % 2 == 0 else order[::-1]:
                sources[label].append(sources_once(env, args.quick_sources))
                print("sources", label, sources[label][-1], flush=True)
        results["sources"] = {"rounds": args.source_rounds, "median": compare(sources),
                              "samples": sources}
    results["load_avg_end"] = os.getloadavg()
    results["wall_s"] = round(time.time() - started, 1)
    results["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path = ROOT / "bench" / "results" / "metrics_overhead.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: results[k]["median"] for k in ("sync", "async", "sources")
                      if k in results}, indent=1))


if __name__ == "__main__":
    main()
