"""How fast `warren --help` and `warren invoke --help` start, beside a bare `python -c pass`,
run alternately in the same session (medians of --runs each); writes
bench/results/cli_startup.json. The target (issue 14): `warren --help` <= 4x `python -c pass`.
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

ROOT = Path(__file__).resolve().parents[1]
WARREN = [sys.executable, "-c", "from warren.cli import main; main()"]  # the console script
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "warren --help": [*WARREN, "--help"],
    "warren invoke --help": [*WARREN, "invoke", "--help"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--base", type=Path, help="a tree from before lazy loading, to compare")
    args = parser.parse_args()
    runs = {name: (argv, ROOT) for name, argv in COMMANDS.items()}
    if args.base:
        runs["warren --help (before)"] = ([*WARREN, "--help"], args.base.resolve())
        runs["warren invoke --help (before)"] = ([*WARREN, "invoke", "--help"], args.base.resolve())
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.runs):
        for name, (argv, tree) in runs.items():
            env = {**os.environ, "PYTHONPATH": str(tree)}
            started = time.perf_counter()
            subprocess.run(argv, env=env, cwd=tree, stdout=subprocess.DEVNULL, check=True)
            times[name].append((time.perf_counter() - started) * 1000)
    medians = {name: round(statistics.median(t), 1) for name, t in times.items()}
    base = medians["python -c pass"]
    results = {
        "median_ms": medians,
        "ratio_to_python": {n: round(m / base, 2) for n, m in medians.items()},
        "runs": args.runs,
        "load_avg": os.getloadavg(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = ROOT / "bench" / "results" / "cli_startup.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
