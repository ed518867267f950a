"""Event source mappings: records/s at batch size 100, write-to-handler latency at batch size 1,
and S3 new-object latency against the poll interval; table on stdout, JSON in bench/results/.

Two paths are measured and named in the results:
- "in-process": the poller's runner (real sources, real batching, commits and counters) calls
  a trivial Python handler in its own process: the ceiling of the mapping machinery itself.
- "fleet": a real `warren up` (router, worker, sandboxes); the runner invokes synchronously
  through the fleet as Lambda's poller does. Completion is counted by the mapping's own
  `succeeded` counter (records committed after the handler returned), latency by the handler
  writing its receive time to Redis.
Run: python3 bench/sources.py [--quick]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
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
from router.batch_invoker import Invoker, PythonInvoker  # noqa: E402
from router.batch_runner import BatchRunner  # noqa: E402
from warren.client import Client  # noqa: E402
from warren.mapping import MappingSpec, MappingStore  # noqa: E402
from warren.settings import Settings  # noqa: E402

AMQP = os.environ.get("WARREN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
REDIS = os.environ.get("WARREN_REDIS_URL", "redis://127.0.0.1:6379/0")
S3 = os.environ.get("WARREN_S3_URL", os.environ.get("WARREN_TEST_S3_URL", "http://127.0.0.1:9310"))
RESULTS = ROOT / "bench" / "results" / "sources.json"
# The fleet's handler: counts what it got (first/last call time, records) in one round trip;
# with BENCH_TIMES set it also notes when it got each record (for latency).
FLEET_HANDLER = '''
import os, time, base64, json, redis
r = redis.Redis.from_url(os.environ["BENCH_REDIS"])
def handler(event, context):
    now = time.time()
    if "Records" in event:
        data = [x["kinesis"]["data"] for x in event["Records"]]
    else:
        data = [m["data"] for ms in event["rmqMessagesByQueue"].values() for m in ms]
    pipe = r.pipeline(transaction=False)
    if os.environ.get("BENCH_TIMES"):
        ns = [json.loads(base64.b64decode(d))["n"] for d in data]
        pipe.hset(os.environ["BENCH_TIMES"], mapping={str(n): repr(now) for n in ns})
    else:
        key = os.environ["BENCH_COUNT"]
        pipe.hsetnx(key, "first", repr(now))
        pipe.hincrby(key, "records", len(data))
        pipe.hset(key, "last", repr(time.time()))
    pipe.execute()
    time.sleep(float(os.environ.get("BENCH_SLEEP_S", "0")))  # an I/O-bound handler
'''


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


class Bench:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.redis = redis.Redis.from_url(REDIS)
        self.store = MappingStore(self.redis, prefix)
        self.settings = Settings.from_environ({"WARREN_PREFIX": prefix}, amqp_url=AMQP,
                                              redis_url=REDIS)

    def cleanup(self) -> None:
        keys = list(self.redis.scan_iter(f"{self.prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            self.redis.delete(*keys[i:i + 1000])

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
            wait(lambda: b.redis.hlen(times_key) >= count, 60)
        got = {int(k): float(v) for k, v in b.redis.hgetall(times_key).items()}
        b.redis.delete(times_key)
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


def s3_latency(b: Bench, poll_s: float, count: int) -> dict[str, Any]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=S3, region_name="us-east-1",
                      aws_access_key_id="bench", aws_secret_access_key="bench")
    bucket = f"{b.prefix}-{uuid.uuid4().hex[:6]}".lower()
    s3.create_bucket(Bucket=bucket)
    seen: dict[str, float] = {}

    def handler(event: dict[str, Any], context: Any) -> None:
        for record in event["Records"]:
            seen[record["s3"]["object"]["key"]] = time.time()

    spec = b.store.create(function="bench", source=f"s3://{bucket}/?endpoint={S3}")
    written: dict[str, float] = {}
    try:
        with b.running(spec, PythonInvoker(handler), poll_interval_s=poll_s):
            time.sleep(2 * poll_s + 0.5)
            for n in range(count):
                key = f"obj-{n:04d}"
                s3.put_object(Bucket=bucket, Key=key, Body=b"x")
                written[key] = time.time()
                time.sleep(poll_s / 3)
            wait(lambda: len(seen) >= count, 10 * poll_s + 10)
    finally:
        for key in written:
            s3.delete_object(Bucket=bucket, Key=key)
        s3.delete_bucket(Bucket=bucket)
        b.store.purge(spec.uuid)
    samples = sorted(1000 * (seen[k] - written[k]) for k in written if k in seen)
    out = summary(samples, count)
    out["poll_interval_s"] = poll_s
    out["within_2x_poll"] = bool(samples) and samples[-1] <= 2000 * poll_s
    return out


@contextlib.contextmanager
def fleet(prefix: str, slots: int = 2) -> Iterator[tuple[Client, int]]:
    env = {**os.environ, "WARREN_PREFIX": prefix, "WARREN_REDIS_URL": REDIS,
           "WARREN_AMQP_URL": AMQP, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "warren", "up", "--slots", str(slots)],
                            env=env,
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    client = Client.from_settings(Settings.from_environ({"WARREN_PREFIX": prefix},
                                                        amqp_url=AMQP, redis_url=REDIS))
    try:
        yield client, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        client.close()


# The fleet runs: default settings first, then the stream's parallelization factors.
FLEET_STREAM = (("stream_batch100", 1, 100), ("stream_batch100_pf4", 4, 100),
                ("stream_batch100_pf10", 10, 100))
SLOW_HANDLER_S = 0.02  # the I/O-bound handler's wait per batch: what lanes overlap


def fleet_runs(b: Bench, prefix: str, n_stream: int, n_queue: int, n_lat: int,
               slots: int) -> dict[str, Any]:
    times = f"{prefix}:times"
    fl: dict[str, Any] = {"slots": slots}
    with fleet(prefix, slots) as (client, pid), tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / "bench"
        code.mkdir()
        (code / "app.py").write_text(FLEET_HANDLER)
        runs: list[tuple[str, str, int, int, dict[str, Any]]] = [
            (name, "stream", n_stream, batch, {"factor": factor})
            for name, factor, batch in FLEET_STREAM]
        runs += [("queue_batch100", "queue", n_queue, 100, {}),
                 ("queue_batch100_mc10", "queue", n_queue, 100, {"max_concurrency": 10})]
        runs += [(f"stream_batch100_sleep20ms_pf{f}", "stream", n_stream // 10, 100,
                  {"factor": f}) for f in (1, 4)]
        for name, kind, n, batch, extra in runs:
            key = f"{prefix}:count:{name}"
            function = f"bench-{name}".replace("_", "-")
            sleep = str(SLOW_HANDLER_S) if "sleep" in name else "0"
            client.create_function(function, code=code, handler="app.handler",
                                   env={"BENCH_REDIS": REDIS, "BENCH_COUNT": key,
                                        "BENCH_SLEEP_S": sleep})

            def seen(key: str = key) -> tuple[int, float, float]:
                got = {k.decode(): float(v) for k, v in b.redis.hgetall(key).items()}
                return int(got.get("records", 0)), got.get("first", 0.0), got.get("last", 0.0)

            time.sleep(1.0)  # the poller's tick picks the mapping up; not part of the figure
            fl[name] = throughput(b, kind, n, None, counted=seen, function=function,
                                  batch_size=batch, fleet_pid=pid, **extra)
            print(name, fl[name], flush=True)
        if n_lat:
            client.create_function("benchlat", code=code, handler="app.handler",
                                   env={"BENCH_REDIS": REDIS, "BENCH_TIMES": times})
            fl["stream_latency_batch1"] = latency(b, "stream", n_lat, None, times,
                                                  function="benchlat")
            fl["queue_latency_batch1"] = latency(b, "queue", n_lat, None, times,
                                                 function="benchlat")
    return fl


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--fleet-only", action="store_true",
                        help="only the fleet runs (replacing only them in the results)")
    parser.add_argument("--slots", type=int, default=2, help="worker slots of `warren up`")
    args = parser.parse_args()
    n_stream, n_queue, n_lat = (40_000, 20_000, 100) if args.quick else (100_000, 40_000, 300)
    prefix = f"bench-src-{uuid.uuid4().hex[:8]}"
    # boto3 (the S3 source) insists on credentials; an S3-compatible test store takes any.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    b = Bench(prefix)
    results: dict[str, Any] = {"machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "load_avg_start": os.getloadavg()}}
    if args.fleet_only:
        try:
            results["fleet"] = fleet_runs(b, prefix, n_stream // 2, n_queue // 2, n_lat, args.slots)
        finally:
            b.cleanup()
        results["machine"]["load_avg_end"] = os.getloadavg()
        # Keep the other paths' figures: only the fleet's (and its machine note) change.
        merged = orjson.loads(RESULTS.read_bytes()) if RESULTS.exists() else {}
        merged["fleet"], merged["fleet_machine"] = results["fleet"], results["machine"]
        RESULTS.write_bytes(orjson.dumps(merged, option=orjson.OPT_INDENT_2))
        report(results)
        return
    try:
        times = f"{prefix}:times"

        def noting(event: dict[str, Any], context: Any) -> None:
            now = time.time()
            if "Records" in event:
                ns = [orjson.loads(base64.b64decode(x["kinesis"]["data"]))["n"]
                      for x in event["Records"]]
            else:
                ns = [orjson.loads(base64.b64decode(m["data"]))["n"]
                      for ms in event["rmqMessagesByQueue"].values() for m in ms]
            b.redis.hset(times, mapping={str(n): repr(now) for n in ns})

        ip: dict[str, Any] = {}
        counter = Counter()
        ip["stream_batch100"] = throughput(b, "stream", n_stream, PythonInvoker(counter),
                                           counted=counter.snapshot)
        for factor in (4, 10):
            counter = Counter()
            ip[f"stream_batch100_pf{factor}"] = throughput(
                b, "stream", n_stream, PythonInvoker(counter), concurrency=factor,
                counted=counter.snapshot, factor=factor)
        for factor in (1, 4, 10):
            counter = Counter(SLOW_HANDLER_S)
            ip[f"stream_batch100_sleep20ms_pf{factor}"] = throughput(
                b, "stream", n_stream // 10, PythonInvoker(counter), concurrency=factor,
                counted=counter.snapshot, factor=factor)
        counter = Counter()
        ip["queue_batch100"] = throughput(b, "queue", n_queue, PythonInvoker(counter),
                                          concurrency=4, counted=counter.snapshot)
        ip["stream_latency_batch1"] = latency(b, "stream", n_lat, PythonInvoker(noting), times)
        ip["queue_latency_batch1"] = latency(b, "queue", n_lat, PythonInvoker(noting), times)
        results["in-process"] = ip
        results["s3_new_object"] = [
            s3_latency(b, p, 10 if args.quick else 20) for p in (0.5, 1.0, 2.0)]
        results["fleet"] = fleet_runs(b, prefix, n_stream // 2, n_queue // 2, n_lat, args.slots)
    finally:
        b.cleanup()
    results["machine"]["load_avg_end"] = os.getloadavg()
    results["targets"] = {"records_per_s": 50_000, "p50_ms_batch1": 10, "s3": "within 2 x poll"}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    report(results)


def report(results: dict[str, Any]) -> None:
    print(f"{'path':<11} {'measure':<24} {'result':>40}")
    for path in ("in-process", "fleet"):
        for name, r in results.get(path, {}).items():
            if not isinstance(r, dict):
                continue
            if "records_per_s" in r:
                shown = f"{r['records_per_s']:>8} rec/s ({r['records']} in {r['seconds']} s)"
            else:
                shown = f"p50 {r.get('p50_ms')} ms  p99 {r.get('p99_ms')} ms ({r['samples']})"
            print(f"{path:<11} {name:<24} {shown:>40}")
            if r.get("cpu_us_per_record"):
                cpu = ", ".join(f"{k} {v}" for k, v in r["cpu_us_per_record"].items())
                print(f"{'':<11} {'  CPU us/record':<24} {cpu}")
    for r in results.get("s3_new_object", []):
        shown = f"p50 {r.get('p50_ms')} ms  max {r.get('max_ms')} ms  <=2x: {r['within_2x_poll']}"
        print(f"{'in-process':<11} {'s3 poll ' + str(r['poll_interval_s']) + ' s':<24} {shown:>40}")
    machine = results["machine"]
    print(f"load average {machine['load_avg_start']} -> {machine['load_avg_end']}")
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
