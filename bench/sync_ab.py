"""Sync round trips of several contenders, interleaved: Warren fleets with different settings
beside Dramatiq (and Celery), all booted at once and called in alternating blocks.

The machine is shared and drifts over a run; timing each contender alone, one after the other,
puts that drift into the comparison. Here every contender is up for the whole run and they take
turns in blocks of `--block` calls, so each sees the same machine. Used two ways:
  - the sync half of bench/fleet.py (Warren with its defaults against Celery and Dramatiq);
  - A/B of a setting:
      python bench/sync_ab.py --warren base= --warren redis=WARREN_SYNC_REPLY=redis
    (a contender per --warren NAME=VAR=VALUE[,VAR=VALUE]; the settings go to its router,
    worker and client alike).
Prints p50/p99 per contender and each one's p50 ratio against Dramatiq's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
for path in (str(ROOT), str(BENCH)):
    if path not in sys.path:
        sys.path.insert(0, path)

from fleet import Fleet, percentile  # noqa: E402

Call = Callable[[], None]


@contextmanager
def warren(amqp_url: str, redis_url: str, env: dict[str, str]) -> Iterator[Call]:
    """A Warren fleet (router + worker with 2 slots) with `env` on top; yields one sync call."""
    fleet = Fleet(amqp_url, redis_url, slots=2, extra_env=env)
    try:
        fleet.client.create_function("trivial", code=fleet.code, handler="app.handler")
        fleet.wait_ready("trivial")
        counter = iter(range(1 << 62))

        def call() -> None:
            n = next(counter)
            result = fleet.client.invoke("trivial", {"n": n})
            assert result.status_code == 200 and result.payload == {"n": n}, result

        yield call
    finally:
        fleet.close()


@contextmanager
def competitor(name: str, amqp_url: str, redis_url: str) -> Iterator[Call]:
    """Celery's or Dramatiq's echo task on a private queue, its workers booted and warm."""
    import redis
    from competitor_tasks.namespace import Namespace
    from competitor_tasks.worker_group import WorkerGroup
    from competitors import BOOT_TIMEOUT_S, ROUND_TRIP_TIMEOUT_S, clean_up

    if name == "celery":
        from competitor_tasks.celery_app import CeleryCompetitor as factory
    else:
        from competitor_tasks.dramatiq_actors import DramatiqCompetitor as factory  # type: ignore[assignment]
    peer = factory(Namespace.fresh(factory.name, amqp_url, redis_url))
    env = {**os.environ, **peer.ns.to_environ()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")]))
    try:
        with WorkerGroup(peer.worker_argv(), env, BENCH) as group:
            deadline = time.monotonic() + BOOT_TIMEOUT_S
            while True:
                group.check_alive()
                try:
                    peer.round_trip(5.0)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)

            def call() -> None:
                try:
                    peer.round_trip(ROUND_TRIP_TIMEOUT_S)
                except Exception:
                    group.check_alive()
                    raise

            yield call
    finally:
        clean_up(peer, redis.Redis.from_url(redis_url))


def interleaved(
    calls: dict[str, Call], runs: int, block: int, warmup: int = 100
) -> dict[str, list[float]]:
    """`runs` timed calls of each contender (ms), in blocks of `block`, the order of the
    contenders shuffled each round; `warmup` untimed calls of each first."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    while any(len(s) < runs for s in samples.values()):
        random.shuffle(order)
        for name in order:
            call, taken = calls[name], samples[name]
            for _ in range(min(block, runs - len(taken))):
                start = time.perf_counter()
                call()
                taken.append((time.perf_counter() - start) * 1000)
    return samples


def summary(samples: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, values in samples.items():
        out[name] = {
            "sync_p50_ms": round(percentile(values, 50), 3),
            "sync_p99_ms": round(percentile(values, 99), 3),
            "sync_runs": len(values),
        }
    dramatiq = out.get("dramatiq")
    if dramatiq:
        for row in out.values():
            row["dramatiq_p50_ratio"] = round(dramatiq["sync_p50_ms"] / row["sync_p50_ms"], 3)
    return out


def measure(
    amqp_url: str,
    redis_url: str,
    fleets: dict[str, dict[str, str]],
    peers: list[str],
    runs: int,
    block: int,
) -> dict[str, dict[str, Any]]:
    with ExitStack() as stack:
        calls = {name: stack.enter_context(warren(amqp_url, redis_url, env))
                 for name, env in fleets.items()}
        for peer in peers:
            calls[peer] = stack.enter_context(competitor(peer, amqp_url, redis_url))
        return summary(interleaved(calls, runs, block))


def parse_fleet(text: str) -> tuple[str, dict[str, str]]:
    name, _, settings = text.partition("=")
    env = dict(item.split("=", 1) for item in settings.split(",") if item)
    return name, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amqp-url", default=os.environ.get(
        "WARREN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--redis-url", default=os.environ.get(
        "WARREN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--warren", action="append", default=[], metavar="NAME=VAR=VALUE,...",
                        help="a Warren contender and its settings (repeatable; default: warren=)")
    parser.add_argument("--peer", action="append", choices=("dramatiq", "celery"), default=None,
                        help="competitors called in the same rounds (default: dramatiq)")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--block", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None, help="write the summary as JSON here")
    args = parser.parse_args()
    fleets = dict(parse_fleet(text) for text in (args.warren or ["warren="]))
    peers = args.peer if args.peer is not None else ["dramatiq"]
    result = measure(args.amqp_url, args.redis_url, fleets, peers, args.runs, args.block)
    for name, row in result.items():
        ratio = row.get("dramatiq_p50_ratio")
        print(f"{name:<14} p50 {row['sync_p50_ms']:7.3f} ms  p99 {row['sync_p99_ms']:7.3f} ms"
              + (f"  dramatiq/this {ratio:5.2f}" if ratio is not None else ""))
    if args.out:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        document = {"measured_at": stamp, "results": result}
        args.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
