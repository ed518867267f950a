"""Sandbox benchmark: cold start and warm round trip, beside a fresh `python -c pass`.

Prints a table and writes bench/results/sandbox.json. Run from the repository root:
    python bench/sandbox.py [--runs 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sandbox import Isolation, Sandbox  # noqa: E402
from sandbox.execlauncher import ExecLauncher  # noqa: E402
from sandbox.forkserver import ForkServer  # noqa: E402

TRIVIAL = "def handler(event, context):\n    return event\n"
SLEEPER = "import time\n\ndef handler(event, context):\n    time.sleep(600)\n"
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "sandbox.json")


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


def cold_starts(code: str, runs: int, isolation: Isolation) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        sb = Sandbox(code, handler="app.handler", isolation=isolation)
        out = sb.invoke(payload=b"{}")
        samples.append(time.perf_counter() - started)
        assert out.ok, out.error
        sb.close()
    return samples


def cold_start_phases(code: str, runs: int) -> dict[str, float]:
    """Where a fork-server cold start goes, seen from the caller: p50 ms per phase.

    The phases are timed by wrapping the Sandbox's own steps; `init_ms` is the child's own
    measure of the handler import, sent in its ready frame (part of "wait for ready").
    """
    steps = {
        "_prepare": "prepare: uid lease, tmp dir, volume (made ahead)",
        "_spec": "spec: environment, limits",
        "_await_ready": "wait for ready: child set-up, import",
        "_invoke": "first response (its request went with the spec)",
    }
    taken: dict[str, list[float]] = {label: [] for label in steps.values()}
    originals = {name: getattr(Sandbox, name) for name in steps}

    def timed_step(name: str) -> Callable[..., object]:
        def step(self: Sandbox, *args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return originals[name](self, *args, **kwargs)
            finally:
                taken[steps[name]].append(time.perf_counter() - started)

        return step

    spawn_rtt: list[float] = []
    spawn = ForkServer.spawn

    def timed_spawn(self: ForkServer, *args: object) -> object:
        started = time.perf_counter()
        try:
            return spawn(self, *args)  # type: ignore[arg-type]
        finally:
            spawn_rtt.append(time.perf_counter() - started)

    for name in steps:
        setattr(Sandbox, name, timed_step(name))
    ForkServer.spawn = timed_spawn  # type: ignore[assignment,method-assign]
    construct, init, total = [], [], []
    try:
        for _ in range(runs):
            started = time.perf_counter()
            sb = Sandbox(code, handler="app.handler")
            built = time.perf_counter()
            out = sb.invoke(payload=b"{}")
            total.append(time.perf_counter() - started)
            construct.append(built - started)
            init.append((out.init_ms or 0.0) / 1000)
            sb.close()
    finally:
        for name, original in originals.items():
            setattr(Sandbox, name, original)
        ForkServer.spawn = spawn  # type: ignore[method-assign]
    phases = {
        "Sandbox(): resolve isolation": construct,
        **taken,
        "hand-off to the spare (spawn)": spawn_rtt,
        "handler import, init_ms (part of wait for ready)": init,
        "total": total,
    }
    return {label: round(percentile([x * 1000 for x in xs], 50), 3) for label, xs in phases.items()}


def warm_round_trips(code: str, runs: int) -> list[float]:
    with Sandbox(code, handler="app.handler") as sb:
        for _ in range(200):
            sb.invoke(payload=b"{}")
        return timed(lambda: sb.invoke(payload=b"{}"), runs)


def bare_pipe_round_trips(runs: int) -> list[float]:
    """The floor: one byte there and back between two warm Python processes."""
    ours, theirs = socket.socketpair()
    echo = (
        "import socket,sys\ns=socket.socket(fileno=int(sys.argv[1]))\n"
        "while d:=s.recv(64): s.send(d)"
    )
    proc = subprocess.Popen([sys.executable, "-c", echo, str(theirs.fileno())],
                            pass_fds=[theirs.fileno()])
    theirs.close()

    def once() -> None:
        ours.send(b"x")
        ours.recv(64)

    for _ in range(200):
        once()
    samples = timed(once, runs)
    ours.close()
    proc.wait()
    return samples


def timeout_overshoot(code: str, runs: int) -> list[float]:
    samples = []
    with Sandbox(code, handler="app.handler", timeout_s=1) as sb:
        for _ in range(runs):
            sb.start()
            started = time.perf_counter()
            out = sb.invoke(payload=b"{}")
            samples.append(time.perf_counter() - started - 1.0)
            assert out.status == "timeout"
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warm-runs", type=int, default=2000)
    parser.add_argument("--timeout-runs", type=int, default=20)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    trivial = tempfile.mkdtemp(prefix="warren-bench-")
    sleeper = tempfile.mkdtemp(prefix="warren-bench-")
    for path, text in ((trivial, TRIVIAL), (sleeper, SLEEPER)):
        os.chmod(path, 0o755)
        with open(os.path.join(path, "app.py"), "w") as f:
            f.write(text)
        os.chmod(os.path.join(path, "app.py"), 0o644)
    try:
        probe = Sandbox(trivial, handler="app.handler")  # starts the shared fork server
        enforcement = probe.enforcement.describe()
        probe.close()
        rows = {
            "python -c pass (subprocess.run)": summary(
                timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), args.runs)
            ),
            "cold start, fork server": summary(cold_starts(trivial, args.runs, Isolation())),
            "cold start, fresh interpreter": summary(
                cold_starts(trivial, args.runs, Isolation(launcher=ExecLauncher()))
            ),
            "warm invoke round trip": summary(warm_round_trips(trivial, args.warm_runs)),
            "bare pipe round trip (floor)": summary(bare_pipe_round_trips(args.warm_runs)),
            "timeout: kill after deadline": summary(timeout_overshoot(sleeper, args.timeout_runs)),
        }
        phases = cold_start_phases(trivial, args.runs)
    finally:
        shutil.rmtree(trivial, ignore_errors=True)
        shutil.rmtree(sleeper, ignore_errors=True)
        ForkServer.shared().close()

    python_p50 = rows["python -c pass (subprocess.run)"]["p50_ms"]
    cold_p50 = rows["cold start, fork server"]["p50_ms"]
    warm = rows["warm invoke round trip"]
    targets = {
        "warm_p50_le_0.15ms": warm["p50_ms"] <= 0.15,
        "warm_p99_le_1ms": warm["p99_ms"] <= 1.0,
        "cold_p50_le_2ms": cold_p50 <= 2.0,
        "cold_3x_faster_than_python": python_p50 >= 3 * cold_p50,
        "timeout_kill_p99_le_200ms": rows["timeout: kill after deadline"]["p99_ms"] <= 200,
    }
    load_after = os.getloadavg()[0]
    print(f"enforcement: {enforcement}")
    print(f"1-minute load average: {load_before:.2f} before, {load_after:.2f} after (2 cores)")
    print(f"{'measurement':<34} {'runs':>6} {'p50 ms':>10} {'p99 ms':>10} {'mean ms':>10}")
    for name, row in rows.items():
        print(f"{name:<34} {row['runs']:>6} {row['p50_ms']:>10.3f} {row['p99_ms']:>10.3f}"
              f" {row['mean_ms']:>10.3f}")
    print(f"cold start speed-up over python -c pass: {python_p50 / cold_p50:.1f}x")
    print("cold start phases (p50 ms, separate runs):")
    for label, ms in phases.items():
        print(f"  {label:<50} {ms:>8.3f}")
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'MISSED'}")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "kernel": platform.release(), "euid": os.geteuid()},
                "enforcement": enforcement,
                "loadavg_1m": {"before": load_before, "after": load_after},
                "results": rows,
                "cold_start_phases_p50_ms": phases,
                "cold_speedup_vs_python": round(python_p50 / cold_p50, 2),
                "targets": targets,
            },
            f,
            indent=2,
        )
        f.write("\n")


if __name__ == "__main__":
    main()
