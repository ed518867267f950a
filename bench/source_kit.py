"""What bench/sources.py measures with: an in-process mapping runner, record writers,
rates and latencies."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pika
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from process_cpu import cpu_us_per_record, fleet_cpu  # noqa: E402

from broker_adapters.sources import open_source  # noqa: E402
from router.batching.invoker import Invoker  # noqa: E402
from router.batching.runner import BatchRunner  # noqa: E402
from warren.mapping import MappingSpec  # noqa: E402
from warren.settings import Settings  # noqa: E402
from warren.store.mappings import MappingStore  # noqa: E402

AMQP = os.environ.get("WARREN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
REDIS = os.environ.get("WARREN_REDIS_URL", "redis://127.0.0.1:6379/0")
S3 = os.environ.get("WARREN_S3_URL", os.environ.get("WARREN_TEST_S3_URL", "http://127.0.0.1:9310"))


class Counter:
    """The in-process trivial handler: counts records, notes its first and last call."""

    def __init__(self, sleep_s: float = 0.0) -> None:
        self.records, self.first, self.last = 0, 0.0, 0.0
        self.lock = threading.Lock()
        self.sleep_s = sleep_s

    def __call__(self, event: dict[str, Any], context: Any) -> None:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        now = time.time()
        if "Records" in event:
            n = len(event["Records"])
        else:
            n = sum(len(ms) for ms in event["rmqMessagesByQueue"].values())
        with self.lock:
            self.first = self.first or now
            self.records += n
            self.last = time.time()

    def snapshot(self) -> tuple[int, float, float]:
        return self.records, self.first, self.last


def start_tally() -> tuple[str, subprocess.Popen[bytes]]:
    """A Redis of the bench's own, on a free port, for handlers to count in: the walls refuse
    a handler the fleet's own Redis (docs/sandbox.md, "no road to the control plane")."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    if not wait(lambda: _answers(client), 10):
        proc.kill()
        raise SystemExit(f"the bench's tally Redis (redis-server on port {port}) did not start")
    client.close()
    return url, proc


def _answers(client: redis.Redis[bytes]) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class Bench:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.redis = redis.Redis.from_url(REDIS)
        # Where handlers count (BENCH_REDIS) and the bench reads their counts.
        self.tally_url, self._tally_proc = start_tally()
        self.tally = redis.Redis.from_url(self.tally_url)
        self.store = MappingStore(self.redis, prefix)
        self.settings = Settings.from_environ({"WARREN_PREFIX": prefix}, amqp_url=AMQP,
                                              redis_url=REDIS)

    def cleanup(self) -> None:
        keys = list(self.redis.scan_iter(f"{self.prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            self.redis.delete(*keys[i:i + 1000])
        self.tally.close()
        self._tally_proc.terminate()
        self._tally_proc.wait(10)

    @contextlib.contextmanager
    def running(self, spec: MappingSpec, invoker: Invoker, concurrency: int = 1,
                **options: Any) -> Iterator[None]:
        def open_() -> Any:
            return open_source(spec.source, mapping_id=spec.uuid, redis=self.redis,
                               prefix=self.prefix, start_position=spec.start_position,
                               options={"consumer": "bench", "batch_size": spec.batch_size,
                                        "prefetch": 2000, **options})

        runner = BatchRunner(spec, open_, invoker, self.store, concurrency=concurrency,
                             poll_wait_s=0.2)
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(60)

    def succeeded(self, spec: MappingSpec) -> int:
        return int(self.store.stats(spec.uuid)["succeeded"])


def wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def fill_stream(r: redis.Redis[bytes], stream: str, count: int, keys: int = 64) -> None:
    """`count` records spread over `keys` partition keys (the lanes of a parallel mapping)."""
    pipe = r.pipeline(transaction=False)
    for n in range(count):
        pipe.xadd(stream, {"data": orjson.dumps({"n": n}), "partitionKey": f"key-{n % keys}"})
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()


@contextlib.contextmanager
def queue(name: str) -> Iterator[tuple[Any, str]]:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP))
    channel = connection.channel()
    channel.queue_declare(name, durable=True)
    try:
        yield channel, AMQP.rstrip("/").rsplit("/", 1)[0] + f"/%2F/{name}"
    finally:
        channel.queue_delete(name)
        connection.close()


def fill_queue(channel: Any, name: str, count: int) -> None:
    for n in range(count):
        channel.basic_publish("", name, orjson.dumps({"n": n}),
                              pika.BasicProperties(message_id=f"m-{n}", delivery_mode=2))
    wait(lambda: channel.queue_declare(name, passive=True).method.message_count >= count, 60)


def throughput(b: Bench, kind: str, count: int, invoker: Invoker | None,
               concurrency: int = 1, counted: Callable[[], tuple[int, float, float]] | None = None,
               function: str = "bench", factor: int = 1, batch_size: int = 100,
               max_concurrency: int | None = None, fleet_pid: int | None = None
               ) -> dict[str, Any]:
    """Pre-filled source; records/s = records the handler got / (its last call - its first).

    `counted()` returns (records, first call, last call) as the handler saw them. With
    `fleet_pid` (the `warren up` process) the CPU each process spent from the mapping's
    creation until every record was committed is reported per record.
    """
    assert counted is not None
    name = f"{b.prefix}-{kind}-{uuid.uuid4().hex[:6]}"
    ctx = queue(name) if kind == "queue" else contextlib.nullcontext((None, ""))
    with ctx as (channel, uri):
        if kind == "queue":
            fill_queue(channel, name, count)
        else:
            fill_stream(b.redis, name, count)
            uri = f"redis+stream:///{name}"
        if kind == "queue" and max_concurrency is None and invoker is not None:
            max_concurrency = max(2, concurrency)
        before = fleet_cpu(fleet_pid) if fleet_pid is not None else {}
        spec = b.store.create(function=function, source=uri, batch_size=batch_size,
                              max_concurrency=max_concurrency, parallelization_factor=factor)
        runner = b.running(spec, invoker, concurrency=concurrency) if invoker else (
            contextlib.nullcontext())  # None: the fleet's poller runs it
        per_process: dict[str, float] | None = None
        cpu = time.process_time()
        with runner:
            done = wait(lambda: counted()[0] >= count, 600)
            cpu_us = 1e6 * (time.process_time() - cpu) / count if invoker else None
            wait(lambda: b.succeeded(spec) >= count, 30)
        if fleet_pid is not None:
            per_process = cpu_us_per_record(before, fleet_cpu(fleet_pid), count)
        records, first, last = counted()
        b.store.purge(spec.uuid)
        if kind == "stream":
            b.redis.delete(name)
    elapsed = max(last - first, 1e-6)
    return {"records": records, "seconds": round(elapsed, 3), "complete": done,
            "batch_size": batch_size, "parallelization_factor": factor,
            "max_concurrency": max_concurrency,
            "records_per_s": round(records / elapsed),
            "poller_cpu_us_per_record": cpu_us and round(cpu_us, 1),
            **({"cpu_us_per_record": per_process} if per_process is not None else {})}


def latency(b: Bench, kind: str, count: int, invoker: Invoker | None, times_key: str,
            gap_s: float = 0.02, function: str = "bench") -> dict[str, Any]:
    """Batch size 1: one record written every gap_s; the handler notes when it got each."""
    name = f"{b.prefix}-lat-{kind}-{uuid.uuid4().hex[:6]}"
    ctx = queue(name) if kind == "queue" else contextlib.nullcontext((None, ""))
    written: dict[int, float] = {}
    with ctx as (channel, uri):
        uri = uri or f"redis+stream:///{name}"
        spec = b.store.create(function=function, source=uri, batch_size=1,
                              start_position="trim-horizon")
        runner = b.running(spec, invoker) if invoker else contextlib.nullcontext()
        with runner:
            time.sleep(1.5 if invoker else 4.0)  # let the mapping start (fleet: a poller tick)
            for n in range(count):
                written[n] = time.time()
                if kind == "queue":
                    channel.basic_publish("", name, orjson.dumps({"n": n}),
                                          pika.BasicProperties(message_id=f"l-{n}"))
                else:
                    b.redis.xadd(name, {"data": orjson.dumps({"n": n})})
                time.sleep(gap_s)
            wait(lambda: b.tally.hlen(times_key) >= count, 60)
        got = {int(k): float(v) for k, v in b.tally.hgetall(times_key).items()}
        b.tally.delete(times_key)
        b.store.purge(spec.uuid)
        b.redis.delete(name)
    samples = sorted(1000 * (got[n] - written[n]) for n in written if n in got)
    return summary(samples, count)


def summary(samples: list[float], count: int) -> dict[str, Any]:
    if not samples:
        return {"samples": 0, "expected": count}
    q = statistics.quantiles(samples, n=100) if len(samples) > 1 else samples * 99
    return {"samples": len(samples), "expected": count,
            "p50_ms": round(statistics.median(samples), 2), "p99_ms": round(q[98], 2),
            "max_ms": round(samples[-1], 2)}
