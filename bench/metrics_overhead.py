"""Metrics on vs off: bench/fleet.py and bench/sources.py (fleet runs), run alternately on the
same machine, medians compared; writes bench/results/metrics_overhead.json.

    git archive HEAD | tar -x -C /tmp/tree
    python bench/metrics_overhead.py --base /tmp/tree --new /tmp/tree [--rounds 7]

`--base` runs without BENCH_METRICS_PORT (no /metrics: no per-invocation counters, no probe
threads), `--new` with it (router, worker and poller serve /metrics, scraped every 5 s). Give
both the same tree to measure metrics alone (the usage meter runs in both: its own cost is
bench/metering_cost.py's), or an older tree as `--base` to compare releases. A pair's order
alternates between rounds so drift in the machine's load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FLEET_KEYS = ("sync_p50_ms", "sync_p99_ms", "sync_amqp_reply_p50_ms", "async_per_s")
SOURCE_RUNS = ("stream_batch100", "stream_batch100_pf4", "queue_batch100", "queue_batch100_mc10")


def fleet_once(tree: Path, env: dict[str, str]) -> dict[str, float]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, "bench/fleet.py", "--skip-competitors", "--out", out.name],
            cwd=tree, env=env, check=True, capture_output=True,
        )
        warren = json.loads(Path(out.name).read_text())["results"]["warren"]
    return {k: float(warren[k]) for k in FLEET_KEYS}


def sources_once(tree: Path, env: dict[str, str]) -> dict[str, float]:
    subprocess.run(
        [sys.executable, "bench/sources.py", "--fleet-only", "--quick"],
        cwd=tree, env=env, check=True, capture_output=True,
    )
    fleet = json.loads((tree / "bench" / "results" / "sources.json").read_text())["fleet"]
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
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--new", type=Path, default=ROOT)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--source-rounds", type=int, default=3)
    args = parser.parse_args()
    env_off = {**os.environ}
    env_off.pop("BENCH_METRICS_PORT", None)
    env_on = {**os.environ, "BENCH_METRICS_PORT": "19180"}
    started = time.time()
    results: dict[str, Any] = {"load_avg_start": os.getloadavg()}
    for name, once, rounds in (("fleet", fleet_once, args.rounds),
                               ("sources", sources_once, args.source_rounds)):
        samples: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        for round_ in range(rounds):
            pairs = [("off", args.base, env_off), ("on", args.new, env_on)]
            for label, tree, env in pairs if round_ % 2 == 0 else pairs[::-1]:
                samples[label].append(once(tree.resolve(), env))
                print(name, label, samples[label][-1], flush=True)
        results[name] = {"rounds": rounds, "median": compare(samples), "samples": samples}
    results["load_avg_end"] = os.getloadavg()
    results["wall_s"] = round(time.time() - started, 1)
    results["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path = ROOT / "bench" / "results" / "metrics_overhead.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: results[k]["median"] for k in ("fleet", "sources")}, indent=1))


if __name__ == "__main__":
    main()
