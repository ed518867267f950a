"""The fleet path of bench/sources.py: a real `warren up`, the handler it runs, and its runs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from source_kit import AMQP, REDIS, Bench, latency, throughput  # noqa: E402

from warren.client import Client  # noqa: E402
from warren.settings import Settings  # noqa: E402

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


@contextlib.contextmanager
def fleet(prefix: str, slots: int = 2) -> Iterator[tuple[Client, int]]:
    env = {**os.environ, "WARREN_PREFIX": prefix, "WARREN_REDIS_URL": REDIS,
           "WARREN_AMQP_URL": AMQP, "PYTHONPATH": str(ROOT)}
    # BENCH_METRICS_PORT=P: `warren up --metrics-port P` (router P, worker P+1, poller P+2),
    # scraped every 5 s meanwhile (the with/without-metrics comparison, docs/operate.md).
    port = int(os.environ.get("BENCH_METRICS_PORT", "0"))
    metrics = ["--metrics-port", str(port)] if port else []
    if port:
        from fleet import scrape_meanwhile

        scrape_meanwhile([port, port + 1, port + 2])
    proc = subprocess.Popen([sys.executable, "-m", "warren", "up", "--slots", str(slots),
                             *metrics],
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
        from fleet import drop_queues

        drop_queues(AMQP, prefix)


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
        # First, while the fleet has just started and nothing is warm: a mapping created on
        # a stream already holding four times the warm runs' entries (200,000; 80,000 with
        # --quick): issue 17's cold run.
        runs: list[tuple[str, str, int, int, dict[str, Any]]] = [
            ("stream_batch100_cold", "stream", n_stream * 4, 100, {"factor": 1})]
        runs += [(name, "stream", n_stream, batch, {"factor": factor})
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
                                   env={"BENCH_REDIS": b.tally_url, "BENCH_COUNT": key,
                                        "BENCH_SLEEP_S": sleep})

            def seen(key: str = key) -> tuple[int, float, float]:
                got = {k.decode(): float(v) for k, v in b.tally.hgetall(key).items()}
                return int(got.get("records", 0)), got.get("first", 0.0), got.get("last", 0.0)

            if not name.endswith("_cold"):
                time.sleep(1.0)  # the poller's tick picks the mapping up; not in the figure
            fl[name] = throughput(b, kind, n, None, counted=seen, function=function,
                                  batch_size=batch, fleet_pid=pid, **extra)
            print(name, fl[name], flush=True)
        if n_lat:
            client.create_function("benchlat", code=code, handler="app.handler",
                                   env={"BENCH_REDIS": b.tally_url, "BENCH_TIMES": times})
            fl["stream_latency_batch1"] = latency(b, "stream", n_lat, None, times,
                                                  function="benchlat")
            fl["queue_latency_batch1"] = latency(b, "queue", n_lat, None, times,
                                                 function="benchlat")
    return fl
