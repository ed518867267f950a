"""Benchmark the fleet: sync round trip p50/p99 and async throughput, beside Celery and Dramatiq.

Runs routers and workers (2 slots) as real processes under unique prefixes, and measures
  - sync: 1,000 round trips of a trivial function with Warren's defaults (request and result
    on Redis lists), as many with WARREN_SYNC_LANE=amqp (the request on RabbitMQ's sync lane,
    the result on Redis), and as many of
    Dramatiq's and Celery's echo task, all booted at once and called in alternating blocks of
    50 (bench/sync_ab.py), so that a shared machine's drift hits each alike;
  - async: 10,000 `Event` invocations submitted with invoke_many; the time from the first
    submit to the last completion, completions counted by the worker's per-function counter
    (written in the same Redis round trip that releases the lease; handlers cannot touch it),
    then Celery's and Dramatiq's async figures (bench/competitors.py) on the same services;
prints a table and writes bench/results/fleet.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from broker_adapters.amqp import Backbone  # noqa: E402
from warren.client import Client  # noqa: E402
from warren.keys import Keys  # noqa: E402
from warren.settings import AmqpSettings, Settings  # noqa: E402

HANDLER = "def handler(event, context):\n    return event\n"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def scrape_meanwhile(ports: list[int], every_s: float = 5.0) -> None:
    """Fetch each port's /metrics every `every_s` on a daemon thread, as Prometheus would."""
    import threading
    import urllib.request

    def loop() -> None:
        while True:
            time.sleep(every_s)
            for port in ports:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
                except OSError:
                    pass

    threading.Thread(target=loop, daemon=True).start()


def drop_queues(amqp_url: str, prefix: str) -> None:
    """Delete every queue of the fleet under `prefix` (its delay queues too), found by name."""
    names = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True,
                           text=True, check=False).stdout.split()
    backbone = Backbone(AmqpSettings.from_url(amqp_url), Keys(prefix), name="warren-bench-cleanup")
    try:
        for name in names:
            if name.startswith((prefix + ".", prefix + "-")):
                backbone.delete_queue(name)
    finally:
        backbone.close()


class Fleet:
    """A router and a worker as subprocesses, stopped by PID on exit."""

    _taken = itertools.count()  # metrics port pairs handed out in this process

    def __init__(
        self, amqp_url: str, redis_url: str, slots: int, extra_env: dict[str, str] | None = None
    ) -> None:
        self.prefix = f"bench{uuid.uuid4().hex[:10]}"
        self.env = {
            **os.environ,
            "WARREN_AMQP_URL": amqp_url,
            "WARREN_REDIS_URL": redis_url,
            "WARREN_PREFIX": self.prefix,
            "PYTHONPATH": str(ROOT),
            **(extra_env or {}),
        }
        self.settings = Settings.from_environ(self.env)
        self.cache = Path("/var/tmp/warren-bench") / self.prefix
        self.code = Path(tempfile.mkdtemp(prefix="warren-bench-code-"))
        (self.code / "app.py").write_text(HANDLER)
        # BENCH_METRICS_PORT=P: the router serves /metrics on P, the worker on P+1, both
        # scraped every 5 s meanwhile (the with/without-metrics comparison, docs/operate.md).
        port = int(self.env.get("BENCH_METRICS_PORT", "0"))
        port = port and port + 2 * next(Fleet._taken)  # several fleets may be up at once
        metrics = (lambda n: ["--metrics-port", str(port + n)]) if port else (lambda n: [])
        self.procs = [
            self._spawn("router", *metrics(0)),
            self._spawn(
                "worker", "--slots", str(slots), "--cache-dir", str(self.cache), *metrics(1)
            ),
        ]
        if port:
            scrape_meanwhile([port, port + 1])
        self.client = Client.from_settings(self.settings)
        self.redis = redis.Redis.from_url(redis_url)

    def _spawn(self, *argv: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "warren", *argv],
            env=self.env,
            cwd=str(ROOT),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self, function: str, warm: int = 100) -> None:
        """Until the router and worker answer `function`, then `warm` more calls."""
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client.invoke(function, {"warm": True})
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        for _ in range(warm):
            self.client.invoke(function, {"warm": True})

    def warm_async(self, function: str, warm: int = 500) -> int:
        """Create `function`, run `warm` async invocations of it; its completions so far."""
        self.client.create_function(function, code=self.code, handler="app.handler")
        self.wait_ready(function, warm=0)
        self.client.invoke_many(function, [{"warm": n} for n in range(warm)])
        self.wait_completed(function, warm)
        return self.completed(function)

    def completed(self, function: str) -> int:
        return int(self.redis.hget(f"{self.prefix}:stats:{function}", "invocations") or 0)

    def wait_completed(self, function: str, count: int, timeout: float = 300) -> float:
        deadline = time.monotonic() + timeout
        while self.completed(function) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.completed(function)} of {count} completed")
            time.sleep(0.002)
        return time.perf_counter()

    def close(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.client.close()
        drop_queues(self.settings.amqp.url, self.prefix)
        keys = list(self.redis.scan_iter(f"{self.prefix}:*"))
        if keys:
            self.redis.delete(*keys)
        shutil.rmtree(self.cache, ignore_errors=True)
        shutil.rmtree(self.code, ignore_errors=True)


def measure_sync(amqp_url: str, redis_url: str, sync_runs: int, peers: list[str]) -> Any:
    """Warren (its defaults, and on RabbitMQ's sync lane) beside `peers`, interleaved
    (bench/sync_ab.py): every contender up at once, called in alternating blocks."""
    from sync_ab import measure

    fleets = {"warren": {}, "warren_amqp_lane": {"WARREN_SYNC_LANE": "amqp"}}
    return measure(amqp_url, redis_url, fleets, peers, sync_runs, block=50)


def measure_async(
    amqp_url: str, redis_url: str, async_count: int, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """10,000 `Event` invocations: from the first submit to the last completion."""
    fleet = Fleet(amqp_url, redis_url, slots=2, extra_env=env)
    try:
        base = fleet.warm_async("trivial_async")
        payloads = [{"n": n} for n in range(async_count)]
        start = time.perf_counter()
        fleet.client.invoke_many("trivial_async", payloads)
        submitted = time.perf_counter()
        done = fleet.wait_completed("trivial_async", base + async_count)
        return {
            "async_per_s": round(async_count / (done - start), 1),
            "async_count": async_count,
            "submit_per_s": round(async_count / (submitted - start), 1),
            "loadavg_1m": round(os.getloadavg()[0], 2),
            "worker": "1 worker, 2 slots (each invocation in its own warm sandbox), 1 router",
        }
    finally:
        fleet.close()


def measure_competitors(amqp_url: str, redis_url: str, sync_runs: int, async_count: int) -> Any:
    try:
        from bench.competitors import measure_all
    except ImportError as exc:
        return {"skipped": f"bench.competitors is not available: {exc}"}
    return measure_all(amqp_url, redis_url, sync_runs=sync_runs, async_count=async_count)


def ratios(warren: dict[str, Any], others: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, row in others.items():
        if not isinstance(row, dict) or "sync_p50_ms" not in row:
            continue
        out[name] = {"sync_p50_speedup": round(row["sync_p50_ms"] / warren["sync_p50_ms"], 2)}
        if "sync_amqp_lane_p50_ms" in warren:
            out[name]["sync_p50_speedup_amqp_lane"] = round(
                row["sync_p50_ms"] / warren["sync_amqp_lane_p50_ms"], 2
            )
        if "async_per_s" in warren:
            out[name]["async_throughput_ratio"] = round(
                warren["async_per_s"] / row["async_per_s"], 2
            )
    targets = {}
    if "dramatiq" in out and "async_per_s" in warren:
        dramatiq = others["dramatiq"]
        targets = {  # issue 17's
            "sync_p50_at_least_1_25x_dramatiq": out["dramatiq"]["sync_p50_speedup"] >= 1.25,
            "sync_p99_below_dramatiq": warren["sync_p99_ms"] < dramatiq["sync_p99_ms"],
            "async_at_least_2x_dramatiq": out["dramatiq"]["async_throughput_ratio"] >= 2.0,
        }
    return {"ratios": out, "targets_met": targets}


def table(results: dict[str, Any]) -> str:
    rows = [f"{'system':<10} {'sync p50 ms':>12} {'sync p99 ms':>12} {'async /s':>10}"]
    for name in ("warren", "celery", "dramatiq"):
        row = results.get(name)
        if isinstance(row, dict) and "sync_p50_ms" in row:
            rows.append(
                f"{name:<10} {row['sync_p50_ms']:>12.2f} {row['sync_p99_ms']:>12.2f} "
                f"{row.get('async_per_s', float('nan')):>10.0f}"
            )
    warren = results.get("warren")
    if isinstance(warren, dict) and "sync_amqp_lane_p50_ms" in warren:
        rows.append(
            f"{'  amqp lane':<10} {warren['sync_amqp_lane_p50_ms']:>12.2f} "
            f"{warren['sync_amqp_lane_p99_ms']:>12.2f}"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("WARREN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("WARREN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--sync-runs", type=int, default=1000)
    parser.add_argument("--async-count", type=int, default=10_000)
    parser.add_argument(
        "--skip-competitors", "--no-competitors", dest="skip_competitors", action="store_true"
    )
    parser.add_argument(
        "--only",
        choices=("all", "sync"),
        default="all",
        help="sync: the interleaved sync round trips only (no async part); for iterating, "
        "not for the recorded figures",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results (default bench/results/fleet.json; with --only sync: not written)",
    )
    args = parser.parse_args()

    started = time.time()
    peers = [] if args.skip_competitors else ["dramatiq", "celery"]
    sync = measure_sync(args.amqp_url, args.redis_url, args.sync_runs, peers)
    warren = dict(sync.pop("warren"))
    amqp_lane = sync.pop("warren_amqp_lane")
    warren["sync_amqp_lane_p50_ms"] = amqp_lane["sync_p50_ms"]
    warren["sync_amqp_lane_p99_ms"] = amqp_lane["sync_p99_ms"]
    results: dict[str, Any] = {"warren": warren}
    if args.only == "all":
        warren.update(measure_async(args.amqp_url, args.redis_url, args.async_count))
        others = ({} if args.skip_competitors else
                  measure_competitors(args.amqp_url, args.redis_url, 50, args.async_count))
        if isinstance(others, dict):
            for name, row in others.items():
                # Their sync figures are the interleaved ones; these runs give async only.
                results[name] = {**row, **sync.get(name, {})}
    else:
        results.update(sync)
    document = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
        **ratios(warren, {k: v for k, v in results.items() if k != "warren"}),
        "wall_s": round(time.time() - started, 1),
    }
    print(table(results))
    print(json.dumps({"ratios": document["ratios"], "targets_met": document["targets_met"]}))
    out = args.out
    if out is None and args.only == "all":
        out = ROOT / "bench" / "results" / "fleet.json"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
