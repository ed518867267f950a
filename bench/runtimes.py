"""Runtimes benchmark: cold start and warm round trip per runtime, beside bare interpreter starts.

Python on the fork-server fast path, Python under awslambdaric (a `provided` bootstrap), Node
(Warren's bootstrap) and a shell bootstrap using curl, each with a trivial echo handler; and in
the same run `node -e 0` and `python -c pass`, each timed between the cold starts it is compared
with (interleaved: the machine is shared, its load drifts). Cold start is a new Sandbox to its
first result;
"pre-started" is the same after `Sandbox.start()` had the runtime up beforehand (what a spare
process ahead of the request would hide). Writes bench/results/runtimes.json. Run from the
repository root:
    python bench/runtimes.py [--runs 200] [--warm-runs 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from support.runtimes import SHELL_ECHO  # noqa: E402

from sandbox import Sandbox  # noqa: E402
from sandbox.forkserver import ForkServer  # noqa: E402
from sandbox.runtimes import node_binary  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "runtimes.json")
RIC_BOOT = f"#!/bin/sh\nexec {sys.executable} -m awslambdaric $_HANDLER\n"
PY_APP = "def handler(event, context):\n    return event\n"
NODE_APP = "exports.handler = async (event) => event;\n"
CASES = {
    # name: (runtime, handler, files)
    "python (fast path)": (None, "app.handler", {"app.py": PY_APP}),
    "python under awslambdaric": (
        "provided.al2023",
        "app.handler",
        {"app.py": PY_APP, "bootstrap": RIC_BOOT},
    ),
    "node (nodejs20.x)": ("nodejs20.x", "index.handler", {"index.js": NODE_APP}),
    "shell bootstrap (curl)": ("provided.al2023", "x", {"bootstrap": SHELL_ECHO}),
}


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


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def make_code(files: dict[str, str]) -> str:
    path = tempfile.mkdtemp(prefix="warren-bench-rt-")
    os.chmod(path, 0o755)
    for name, text in files.items():
        with open(os.path.join(path, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(path, name), 0o755 if name == "bootstrap" else 0o644)
    return path


def cold(
    code: str,
    runtime: str | None,
    handler: str,
    runs: int,
    prestart: bool,
    beside: list[str] | None = None,
    beside_samples: list[float] | None = None,
) -> list[float]:
    """New sandbox to first result; with `beside`, that command is timed between the runs too
    (interleaved, so that both see the same load on this shared machine)."""
    samples = []
    for _ in range(runs):
        if beside is not None and beside_samples is not None:
            beside_samples.extend(timed(lambda: subprocess.run(beside, check=True), 1))
        if prestart:
            sb = Sandbox(code, handler, runtime=runtime, timeout_s=30)
            sb.start()
            time.sleep(0.5)  # the runtime is up and waiting before the request arrives
            started = time.perf_counter()
        else:
            started = time.perf_counter()
            sb = Sandbox(code, handler, runtime=runtime, timeout_s=30)
        out = sb.invoke(payload=b'{"k": 1}')
        samples.append(time.perf_counter() - started)
        assert out.ok, out.error
        sb.close()
    return samples


def warm(code: str, runtime: str | None, handler: str, runs: int) -> list[float]:
    with Sandbox(code, handler, runtime=runtime, timeout_s=30) as sb:
        for _ in range(50):
            assert sb.invoke(payload=b'{"k": 1}').ok
        return timed(lambda: sb.invoke(payload=b'{"k": 1}'), runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--prestart-runs", type=int, default=50)
    parser.add_argument("--warm-runs", type=int, default=2000)
    parser.add_argument("--shell-warm-runs", type=int, default=200)  # two curl starts each
    args = parser.parse_args()
    node = node_binary()
    if node is None:
        sys.exit("bench/runtimes.py needs node (apt-get install nodejs)")
    load_before = os.getloadavg()[0]
    rows: dict[str, dict[str, float]] = {}
    bare = {"node -e 0": [node, "-e", "0"], "python -c pass": [sys.executable, "-c", "pass"]}
    beside = {
        "python (fast path)": "python -c pass",
        "python under awslambdaric": "python -c pass",
        "node (nodejs20.x)": "node -e 0",
    }
    codes = []
    try:
        for name, (runtime, handler, files) in CASES.items():
            code = make_code(files)
            codes.append(code)
            print(f"{name} ...", flush=True)
            bare_name = beside.get(name)
            bare_samples: list[float] = []
            rows[f"{name}: cold start"] = summary(
                cold(code, runtime, handler, args.runs, False,
                     bare[bare_name] if bare_name else None, bare_samples)
            )
            if bare_name:
                rows[f"{bare_name} (interleaved with the {name} cold starts)"] = summary(
                    bare_samples
                )
            rows[f"{name}: cold start, pre-started"] = summary(
                cold(code, runtime, handler, args.prestart_runs, True)
            )
            runs = args.shell_warm_runs if "curl" in name else args.warm_runs
            rows[f"{name}: warm round trip"] = summary(warm(code, runtime, handler, runs))
    finally:
        for code in codes:
            shutil.rmtree(code, ignore_errors=True)
        ForkServer.shared().close()
    load_after = os.getloadavg()[0]
    node_bare = rows["node -e 0 (interleaved with the node (nodejs20.x) cold starts)"]["p50_ms"]
    targets = {
        "node_warm_p50_le_0.5ms": rows["node (nodejs20.x): warm round trip"]["p50_ms"] <= 0.5,
        "node_cold_le_1.5x_node_e_0": rows["node (nodejs20.x): cold start"]["p50_ms"]
        <= 1.5 * node_bare,
        "node_cold_pre_started_le_1.5x_node_e_0": rows[
            "node (nodejs20.x): cold start, pre-started"
        ]["p50_ms"]
        <= 1.5 * node_bare,
        "awslambdaric_warm_p50_le_0.6ms": rows["python under awslambdaric: warm round trip"][
            "p50_ms"
        ]
        <= 0.6,
    }
    print(f"1-minute load average: {load_before:.2f} before, {load_after:.2f} after")
    print(f"{'measurement':<52} {'runs':>6} {'p50 ms':>10} {'p99 ms':>10}")
    for name, row in rows.items():
        print(f"{name:<52} {row['runs']:>6} {row['p50_ms']:>10.3f} {row['p99_ms']:>10.3f}")
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'MISSED'}")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "node": subprocess.run([node, "--version"], capture_output=True, text=True)
                    .stdout.strip(),
                    "kernel": platform.release(),
                    "euid": os.geteuid(),
                },
                "loadavg_1m": {"before": load_before, "after": load_after},
                "results": rows,
                "node_cold_vs_node_e_0": round(
                    rows["node (nodejs20.x): cold start"]["p50_ms"] / node_bare, 2
                ),
                "targets": targets,
            },
            f,
            indent=2,
        )
        f.write("\n")


if __name__ == "__main__":
    main()
