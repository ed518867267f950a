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

from competitor_tasks import celery_app, dramatiq_actors  # noqa: E402
from competitor_tasks.namespace import Namespace  # noqa: E402
from competitor_tasks.worker_group import WorkerGroup  # noqa: E402

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


class CeleryCompetitor:
    name = "celery"

    def __init__(self, ns: Namespace) -> None:
        import celery

        self.version = celery.__version__
        self.concurrency = "prefork pool, --concurrency=2 (2 child processes)"
        self.ns = ns
        self.bench = celery_app.build(ns)

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-m", "competitor_tasks.celery_app"]

    def round_trip(self, timeout_s: float) -> None:
        result = self.bench.echo.delay(1)
        if result.get(timeout=timeout_s) != 1:
            raise RuntimeError("celery echo returned the wrong value")

    def fire(self) -> None:
        self.bench.count.delay()

    def close(self) -> None:
        with self.bench.app.connection_for_write() as conn:
            conn.default_channel.queue_delete(self.ns.queue)
            conn.default_channel.exchange_delete(self.ns.queue)
        self.bench.app.close()


class DramatiqCompetitor:
    name = "dramatiq"

    def __init__(self, ns: Namespace) -> None:
        import dramatiq

        self.version = dramatiq.__version__
        self.concurrency = "--processes 2 --threads 1 (2 worker processes, 1 thread each)"
        self.ns = ns
        self.bench = dramatiq_actors.build(ns)

    def worker_argv(self) -> list[str]:
        target = "competitor_tasks.dramatiq_actors:install_from_environ"
        return [sys.executable, "-m", "dramatiq", target, *dramatiq_actors.WORKER_ARGS]

    def round_trip(self, timeout_s: float) -> None:
        message = self.bench.echo.send(1)
        value = message.get_result(
            backend=self.bench.backend, block=True, timeout=int(timeout_s * 1000)
        )
        if value != 1:
            raise RuntimeError("dramatiq echo returned the wrong value")

    def fire(self) -> None:
        self.bench.count.send()

    def close(self) -> None:
        from dramatiq.common import dq_name, xq_name

        channel = self.bench.broker.channel
        for queue in (self.ns.queue, dq_name(self.ns.queue), xq_name(self.ns.queue)):
            channel.queue_delete(queue)
        self.bench.broker.close()


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def measure_sync(competitor: Competitor, runs: int) -> tuple[float, float]:
    """p50 and p99 in ms of enqueue-then-wait-for-the-result, one call at a time."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        competitor.round_trip(ROUND_TRIP_TIMEOUT_S)
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
    for _ in range(WARMUP_SYNC):
        competitor.round_trip(ROUND_TRIP_TIMEOUT_S)
    measure_async(competitor, counter, group, WARMUP_ASYNC)


def measure_one(competitor: Competitor, sync_runs: int, async_count: int) -> dict[str, Any]:
    ns = competitor.ns
    client = redis.Redis.from_url(ns.redis_url)
    env = {**os.environ, **ns.to_environ()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))

    def counter() -> int:
        return int(client.get(ns.counter_key) or 0)

    try:
        with WorkerGroup(competitor.worker_argv(), env, BENCH_DIR) as group:
            warm_up(competitor, counter, group)
            p50, p99 = measure_sync(competitor, sync_runs)
            per_s, enqueue_per_s = measure_async(competitor, counter, group, async_count)
    finally:
        competitor.close()
        keys: list[str | bytes] = [ns.counter_key]
        keys.extend(client.scan_iter(match=f"{ns.result_prefix}:*", count=1000))
        client.delete(*keys)
        client.close()
    return {
        "sync_p50_ms": round(p50, 3),
        "sync_p99_ms": round(p99, 3),
        "async_per_s": round(per_s, 1),
        "version": competitor.version,
        "enqueue_per_s": round(enqueue_per_s, 1),
        "concurrency": competitor.concurrency,
    }


def measure_all(
    amqp_url: str, redis_url: str, *, sync_runs: int = 1000, async_count: int = 10000
) -> dict[str, dict[str, Any]]:
    """Measure Celery then Dramatiq, each alone on the machine with a fresh private queue.

    Returns {"celery": {...}, "dramatiq": {...}}, each with sync_p50_ms, sync_p99_ms,
    async_per_s and version (plus enqueue_per_s and a note on the concurrency used).
    """
    results: dict[str, dict[str, Any]] = {}
    for factory in (CeleryCompetitor, DramatiqCompetitor):
        competitor = factory(Namespace.fresh(factory.name, amqp_url, redis_url))
        results[factory.name] = measure_one(competitor, sync_runs, async_count)
    return results


def render_table(results: dict[str, dict[str, Any]]) -> str:
    header = f"{'framework':<10} {'version':<8} {'sync p50 ms':>11} {'sync p99 ms':>11} " \
             f"{'async tasks/s':>13}"
    rows = [header, "-" * len(header)]
    for name, row in results.items():
        rows.append(f"{name:<10} {row['version']:<8} {row['sync_p50_ms']:>11.2f} "
                    f"{row['sync_p99_ms']:>11.2f} {row['async_per_s']:>13,.0f}")
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
    results = measure_all(args.amqp_url, args.redis_url,
                          sync_runs=args.sync_runs, async_count=args.async_count)
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
