"""`--network none` for Node: cold start and warm round trip beside the same function with network.

Alternates a Node echo function with `network="default"` and `network="none"` (its Runtime API
listener made inside the child's namespace, sandbox/netns.py), each a new Sandbox to its first
result, then warm round trips; interleaved because the machine is shared. Needs root (the walls)
and Node. Writes bench/results/netnone.json. Run from the repository root:
    python bench/netnone.py [--runs 100] [--warm-runs 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT]

from sandbox import Isolation, Sandbox  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "netnone.json")
NODE_APP = "exports.handler = async (event) => event;\n"
MODES = ("default", "none")


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {
        "runs": len(ms),
        "p50_ms": round(percentile(ms, 50), 4),
        "p99_ms": round(percentile(ms, 99), 4),
        "mean_ms": round(sum(ms) / len(ms), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warm-runs", type=int, default=1000)
    args = parser.parse_args()
    code = tempfile.mkdtemp(prefix="warren-bench-netnone-", dir="/var/tmp")
    os.chmod(code, 0o755)
    with open(os.path.join(code, "index.js"), "w") as f:
        f.write(NODE_APP)
    os.chmod(os.path.join(code, "index.js"), 0o644)
    iso = Isolation.from_environ(os.environ)
    cold: dict[str, list[float]] = {m: [] for m in MODES}
    warm: dict[str, list[float]] = {m: [] for m in MODES}
    enforcement: dict[str, str] = {}
    load_before = os.getloadavg()[0]
    try:
        for _ in range(args.runs):
            for mode in MODES:
                started = time.perf_counter()
                with Sandbox(code, "index.handler", runtime="nodejs20.x", isolation=iso,
                             memory_mb=256, network=mode) as sb:
                    assert sb.invoke({"a": 1}).ok
                    cold[mode].append(time.perf_counter() - started)
                    enforcement[mode] = sb.enforcement.describe()
        sandboxes = {m: Sandbox(code, "index.handler", runtime="nodejs20.x", isolation=iso,
                                memory_mb=256, network=m) for m in MODES}
        try:
            for sb in sandboxes.values():
                sb.invoke({})
            for _ in range(args.warm_runs):
                for mode, sb in sandboxes.items():
                    started = time.perf_counter()
                    assert sb.invoke({"a": 1}).ok
                    warm[mode].append(time.perf_counter() - started)
        finally:
            for sb in sandboxes.values():
                sb.close()
    finally:
        shutil.rmtree(code, ignore_errors=True)
    results = {}
    for mode in MODES:
        results[f"node network={mode}: cold start"] = summary(cold[mode])
        results[f"node network={mode}: warm round trip"] = summary(warm[mode])
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release(), "euid": os.geteuid()},
        "enforcement": enforcement,
        "loadavg_1m": {"before": load_before, "after": os.getloadavg()[0]},
        "results": results,
    }
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
