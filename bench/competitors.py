"""Celery and Dramatiq measured on this machine's RabbitMQ and Redis, for side-by-side figures.

Run directly (`python bench/competitors.py`) for a table and bench/results/competitors.json,
or call `measure_all` (bench/fleet.py does, so Warren and its competitors share one run).
See docs/benchmarks.md for what is measured and how each framework is configured.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import orjson
import redis

BENCH_DIR = Path(__file__).resolve().parent
# The worker processes import competitor_tasks from BENCH_DIR (via PYTHONPATH); the client
# side imports the very same factories, whoever imported this module.
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from competitor_tasks.celery_app import CeleryCompetitor  # noqa: E402
from competitor_tasks.dramatiq_actors import DramatiqCompetitor  # noqa: E402
from competitor_tasks.namespace import Namespace  # noqa: E402
from competitor_tasks.worker_group import WorkerDied, WorkerGroup  # noqa: E402

RESULTS_PATH = BENCH_DIR / "results" / "competitors.json"
BOOT_TIMEOUT_S = 60.0
ROUND_TRIP_TIMEOUT_S = 10.0
WARMUP_SYNC = 100
WARMUP_ASYNC = 500


class Competitor(Protocol):
    """One framework's client side, as the measurement loops drive it."""

    name: str
    version: str
    concurrency: str
    ns: Namespace

    def worker_argv(self) -> list[str]: ...

    def round_trip(self, timeout_s: float) -> None: ...

    def fire(self) -> None: ...

    def close(self) -> None: ...


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def measure_sync(competitor: Competitor, group: WorkerGroup, runs: int) -> tuple[float, float]:
    """p50 and p99 in ms of enqueue-then-wait-for-the-result, one call at a time."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        try:
            competitor.round_trip(ROUND_TRIP_TIMEOUT_S)
        except Exception:
            group.check_alive()  # a dead worker is the likelier story than a slow one
            raise
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return percentile(samples, 50), percentile(samples, 99)


def measure_async(
    competitor: Competitor, counter: Callable[[], int], group: WorkerGroup, count: int
) -> tuple[float, float]:
    """Tasks/s from the first enqueue until the worker-side counter shows the last one done,
    and the client's own enqueue rate (to show whether publishing was the bottleneck)."""
    target = counter() + count
    start = time.perf_counter()
    for _ in range(count):
        competitor.fire()
    enqueued = time.perf_counter()
    deadline = enqueued + max(120.0, count / 50)
    while counter() < target:
        group.check_alive()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{competitor.name}: only {counter() - target + count} of "
                               f"{count} tasks done")
        time.sleep(0.002)
    done = time.perf_counter()
    return count / (done - start), count / (enqueued - start)


def warm_up(competitor: Competitor, counter: Callable[[], int], group: WorkerGroup) -> None:
    """Wait for the worker to boot, then run both paths so connections and pools are hot."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while True:
        group.check_alive()
        try:
            competitor.round_trip(5.0)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    measure_sync(competitor, group, WARMUP_SYNC)
    measure_async(competitor, counter, group, WARMUP_ASYNC)


class BenchSetupError(RuntimeError):
    """The services the benchmark needs are not reachable or the arguments make no sense."""


def preflight(amqp_url: str, redis_url: str, sync_runs: int, async_count: int) -> None:
    """Fail in seconds with one clear line, instead of after the workers' boot timeout."""
    if sync_runs < 1 or async_count < 1:
        raise BenchSetupError("sync_runs and async_count must both be at least 1")
    from kombu.connection import Connection

    try:
        with Connection(amqp_url, connect_timeout=5) as conn:  # type: ignore[no-untyped-call]
            conn.connect()
    except Exception as exc:
        raise BenchSetupError(f"RabbitMQ at {amqp_url} is not reachable: {exc}") from exc
    try:
        with redis.Redis.from_url(redis_url, socket_connect_timeout=5) as client:
            client.ping()
    except redis.RedisError as exc:
        raise BenchSetupError(f"Redis at {redis_url} is not reachable: {exc}") from exc


def clean_up(competitor: Competitor, client: redis.Redis[bytes]) -> None:
    """Delete the run's queues and keys; a failure here is reported, never raised over the
    measurement's own outcome."""
    ns = competitor.ns
    try:
        competitor.close()
        keys: list[str | bytes] = [ns.counter_key]
        keys.extend(client.scan_iter(match=f"{ns.result_prefix}:*", count=1000))
        client.delete(*keys)
    except Exception as exc:  # best effort, but said out loud
        print(f"warning: {competitor.name} left queue {ns.queue!r} or keys "
              f"{ns.result_prefix!r}* behind: {exc}", file=sys.stderr)
    finally:
        client.close()


def measure_one(competitor: Competitor, sync_runs: int, async_count: int) -> dict[str, Any]:
    """Boot the competitor's workers on its private queue, measure, stop them, clean up."""
    ns = competitor.ns
    client = redis.Redis.from_url(ns.redis_url)
    env = {**os.environ, **ns.to_environ()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))

    def counter() -> int:
        return int(client.get(ns.counter_key) or 0)

    try:
        with WorkerGroup(competitor.worker_argv(), env, BENCH_DIR) as group:
            warm_up(competitor, counter, group)
            # The machine is shared: the load next to each figure says how much to trust it.
            load_1m = os.getloadavg()[0]
            p50, p99 = measure_sync(competitor, group, sync_runs)
            per_s, enqueue_per_s = measure_async(competitor, counter, group, async_count)
    finally:
        clean_up(competitor, client)
    return {
        "sync_p50_ms": round(p50, 3),
        "sync_p99_ms": round(p99, 3),
        "async_per_s": round(per_s, 1),
        "version": competitor.version,
        "enqueue_per_s": round(enqueue_per_s, 1),
        "concurrency": competitor.concurrency,
        "loadavg_1m": round(load_1m, 2),
    }


def measure_all(
    amqp_url: str, redis_url: str, *, sync_runs: int = 1000, async_count: int = 10000
) -> dict[str, dict[str, Any]]:
    """Measure Celery then Dramatiq, each alone on the machine with a fresh private queue.

    Returns {"celery": {...}, "dramatiq": {...}}, each with sync_p50_ms, sync_p99_ms,
    async_per_s and version (plus enqueue_per_s, the concurrency used and the machine's
    1-minute load average when the measurement started).
    Raises BenchSetupError when RabbitMQ or Redis is unreachable, WorkerDied when a worker
    exits early, TimeoutError when tasks stop completing.
    """
    preflight(amqp_url, redis_url, sync_runs, async_count)
    results: dict[str, dict[str, Any]] = {}
    for factory in (CeleryCompetitor, DramatiqCompetitor):
        competitor = factory(Namespace.fresh(factory.name, amqp_url, redis_url))
        results[factory.name] = measure_one(competitor, sync_runs, async_count)
    return results


def render_table(results: dict[str, dict[str, Any]]) -> str:
    header = (f"{'framework':<10} {'version':<8} {'sync p50 ms':>11} {'sync p99 ms':>11} "
              f"{'async tasks/s':>13} {'enqueue/s':>9} {'load 1m':>7}")
    rows = [header, "-" * len(header)]
    for name, row in results.items():
        rows.append(f"{name:<10} {row['version']:<8} {row['sync_p50_ms']:>11.2f} "
                    f"{row['sync_p99_ms']:>11.2f} {row['async_per_s']:>13,.0f} "
                    f"{row['enqueue_per_s']:>9,.0f} {row['loadavg_1m']:>7.2f}")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amqp-url", default=os.environ.get(
        "WARREN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--redis-url", default=os.environ.get(
        "WARREN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--sync-runs", type=int, default=1000)
    parser.add_argument("--async-count", type=int, default=10000)
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        results = measure_all(args.amqp_url, args.redis_url,
                              sync_runs=args.sync_runs, async_count=args.async_count)
    except (BenchSetupError, WorkerDied, TimeoutError) as exc:
        sys.exit(f"error: {exc}")
    print(render_table(results))
    report = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "sync_runs": args.sync_runs,
        "async_count": args.async_count,
        "wall_s": round(time.monotonic() - started, 1),
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")


if __name__ == "__main__":
    main()
