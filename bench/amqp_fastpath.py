"""What pika's fast paths (broker_adapters/amqp_fastpath.py) buy: CPU per message, on and off.

Four measurements on the local RabbitMQ, each with WARREN_AMQP_FASTPATH=1 and =0 in turn:
confirmed publish_many (100 per batch), one confirmed publish at a time, a direct reply-to
round trip (a replying thread on its own connection), and a queue source reading and acking
batches of 100. Figures are process CPU microseconds per message (the box is shared, so wall
time is noisy) plus wall-clock rates. Run: python3 bench/amqp_fastpath.py [--quick] [--out F]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broker_adapters.amqp import Backbone  # noqa: E402
from broker_adapters.sources import open_source  # noqa: E402
from warren.keys import Keys  # noqa: E402
from warren.settings import Settings  # noqa: E402

AMQP = os.environ.get("WARREN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
REDIS = os.environ.get("WARREN_REDIS_URL", "redis://127.0.0.1:6379/0")
RESULTS = ROOT / "bench" / "results" / "amqp_fastpath.json"
BODY = b"x" * 200


def measure(fn: Any, count: int) -> dict[str, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_us_per_msg": round(cpu / count * 1e6, 2), "msgs_per_s": round(count / wall)}


def publish_many(settings: Settings, prefix: str, count: int) -> dict[str, float]:
    backbone = Backbone(settings.amqp, Keys(prefix), name="bench-publish-many")
    queue = f"{prefix}.many"
    backbone.declare_queue(queue)
    try:
        return measure(
            lambda: [backbone.publish_many(queue, [BODY] * 100) for _ in range(count // 100)],
            count,
        )
    finally:
        backbone.delete_queue(queue)
        backbone.close()


def publish_one(settings: Settings, prefix: str, count: int) -> dict[str, float]:
    backbone = Backbone(settings.amqp, Keys(prefix), name="bench-publish-one")
    queue = f"{prefix}.one"
    backbone.declare_queue(queue)
    try:
        return measure(lambda: [backbone.publish(queue, BODY) for _ in range(count)], count)
    finally:
        backbone.delete_queue(queue)
        backbone.close()


def round_trips(settings: Settings, prefix: str, count: int) -> dict[str, float]:
    keys = Keys(prefix)
    queue = f"{prefix}.rpc"
    server = Backbone(settings.amqp, keys, name="bench-rpc-server")
    server.declare_queue(queue)
    stop = threading.Event()

    def serve() -> None:
        def reply(delivery: Any) -> None:
            server.publish(delivery.reply_to, delivery.body, confirm=False,
                           correlation_id=delivery.correlation_id)
            server.ack(delivery.tag)

        server.consume(queue, reply, 10)
        while not stop.is_set():
            server.process(0.05)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = Backbone(settings.amqp, keys, name="bench-rpc-client")
    got: dict[str, bytes] = {}
    client.consume_replies(lambda d: got.__setitem__(d.correlation_id or "", d.body))
    samples: list[float] = []

    def run() -> None:
        for n in range(count):
            cid = str(n)
            start = time.perf_counter()
            client.request(queue, BODY, correlation_id=cid, expiration_ms=10_000)
            while cid not in got:
                client.process(1.0)
            samples.append(time.perf_counter() - start)
            del got[cid]

    try:
        out = measure(run, count)
        out["p50_us"] = round(statistics.median(samples) * 1e6, 1)
        return out
    finally:
        stop.set()
        thread.join(5)
        client.close()
        server.delete_queue(queue)
        server.close()


def queue_source(settings: Settings, prefix: str, count: int) -> dict[str, float]:
    queue = f"{prefix}.source"
    backbone = Backbone(settings.amqp, Keys(prefix), name="bench-source-fill")
    backbone.declare_queue(queue)
    for _ in range(count // 100):
        backbone.publish_many(queue, [BODY] * 100)
    client = redis.Redis.from_url(REDIS)
    source = open_source(
        f"{AMQP}/{queue}", mapping_id=uuid.uuid4().hex, redis=client, prefix=prefix,
        options={"prefetch": 2000, "fastpath": settings.amqp.fastpath},
    )

    def run() -> None:
        left = count
        while left > 0:
            records = source.read(100, 5.0)
            source.commit(records)
            left -= len(records)

    try:
        return measure(run, count)
    finally:
        source.close()
        backbone.delete_queue(queue)
        backbone.close()
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    scale = 1 if args.quick else 3
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(),
                                           "load_avg_start": os.getloadavg()}}
    for flag in ("1", "0"):
        settings = Settings.from_environ({"WARREN_AMQP_FASTPATH": flag}, amqp_url=AMQP)
        prefix = f"bench-fp-{uuid.uuid4().hex[:8]}"
        results[f"fastpath={flag}"] = {
            "publish_many": publish_many(settings, prefix, 20_000 * scale),
            "publish_one": publish_one(settings, prefix, 2_000 * scale),
            "round_trip": round_trips(settings, prefix, 2_000 * scale),
            "queue_source": queue_source(settings, prefix, 20_000 * scale),
        }
        print(flag, orjson.dumps(results[f"fastpath={flag}"]).decode(), flush=True)
    results["machine"]["load_avg_end"] = os.getloadavg()
    args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
