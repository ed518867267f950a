"""The triggers of bench/sources.py: PostgreSQL table changes, MQTT and topics, measured in the
same run as a Redis stream so the figures compare.

- records/s at batch size 100 of a pre-filled source, and write-to-handler latency at batch
  size 1, in-process (the poller's runner with a trivial handler in its process);
- topic publish-to-handler latency through a real `warren up` (router relay, worker, sandbox).

PostgreSQL: the one at WARREN_BENCH_PG (default postgres://postgres@127.0.0.1:5432/postgres,
wal_level=logical as deploy/ensure-services.sh sets it). MQTT: a private mosquitto on a free
port with `max_queued_messages 0` (the stock broker keeps at most 1000 queued per session).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
from source_kit import Bench, fill_stream, latency, summary, wait

from broker_adapters.sources import prepare_source, purge_source
from router.batching.invoker import PythonInvoker
from warren.store.mappings import MappingStore

PG = os.environ.get("WARREN_BENCH_PG", "postgres://postgres@127.0.0.1:5432/postgres")


class Tally:
    """A trivial handler for any of the shapes: counts records, notes first and last call;
    with `times` it notes when each record's n arrived."""

    def __init__(self, times: dict[int, float] | None = None) -> None:
        self.records, self.first, self.last = 0, 0.0, 0.0
        self.times = times
        self.lock = threading.Lock()

    def __call__(self, event: Any, context: Any) -> None:
        now = time.time()
        if isinstance(event, list):
            items = event
        elif isinstance(event, dict) and "Records" in event:
            items = event["Records"]
        else:
            items = [event]
        with self.lock:
            self.first = self.first or now
            self.records += len(items)
            self.last = time.time()
            if self.times is not None:
                for item in items:
                    self.times[_n(item)] = now

    def snapshot(self) -> tuple[int, float, float]:
        return self.records, self.first, self.last


def _n(item: dict[str, Any]) -> int:
    if "dynamodb" in item:
        return int(item["dynamodb"]["NewImage"]["n"]["N"])
    return int(item["n"])


def _rate(tally: Tally, count: int, store: MappingStore, spec_id: str) -> dict[str, Any]:
    records, first, last = tally.snapshot()
    elapsed = max(last - first, 1e-6)
    return {"records": records, "seconds": round(elapsed, 3), "complete": records >= count,
            "batch_size": 100, "records_per_s": round(records / elapsed),
            "succeeded": store.stats(spec_id)["succeeded"]}


# -- PostgreSQL ------------------------------------------------------------------------------

def table_runs(b: Bench, count: int, n_lat: int) -> dict[str, Any]:
    store = MappingStore(b.redis, b.prefix, prepare=prepare_source, purge=purge_source)
    conn = psycopg.connect(PG.replace("postgres://", "postgresql://"), autocommit=True)
    table = f"bench_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, n int, body text)")
    conn.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
    out: dict[str, Any] = {}
    try:
        uri = f"{PG}?table=public.{table}"
        spec = store.create(function="bench", source=uri, batch_size=100)
        for first in range(0, count, 1000):  # transactions of 1000 rows
            conn.execute(f"INSERT INTO {table} SELECT g, g, 'row ' || g FROM "
                         "generate_series(%s::int, %s::int) g", (first, first + 999))
        tally = Tally()
        with b.running(spec, PythonInvoker(tally)):
            wait(lambda: tally.records >= count, 300)
            wait(lambda: store.stats(spec.uuid)["succeeded"] >= count, 30)
        out["table_batch100"] = _rate(tally, count, store, spec.uuid)
        store.delete(spec.uuid)

        spec = store.create(function="bench", source=uri + "&view=NEW_IMAGE", batch_size=1)
        times: dict[int, float] = {}
        written: dict[int, float] = {}
        with b.running(spec, PythonInvoker(Tally(times))):
            time.sleep(1.0)
            for n in range(count, count + n_lat):
                written[n] = time.time()
                conn.execute(f"INSERT INTO {table} VALUES (%s, %s, 'x')", (n, n))
                time.sleep(0.02)
            wait(lambda: len(times) >= n_lat, 60)
        out["table_latency_batch1"] = summary(
            sorted(1000 * (times[n] - written[n]) for n in written if n in times), n_lat)
        store.delete(spec.uuid)
    finally:
        conn.execute(f"DROP TABLE {table}")
        conn.close()
    return out


# -- MQTT ------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mqtt_runs(b: Bench, count: int, n_lat: int) -> dict[str, Any]:
    import paho.mqtt.client as mqtt

    store = MappingStore(b.redis, b.prefix, prepare=prepare_source, purge=purge_source)
    out: dict[str, Any] = {}
    with _broker() as port:
        uri = f"mqtt://127.0.0.1:{port}/bench/#"
        spec = store.create(function="bench", source=uri, batch_size=100)
        lines = b"".join(b'{"n":%d}\n' % n for n in range(count))
        subprocess.run(["mosquitto_pub", "-p", str(port), "-q", "1", "-t", "bench/a", "-l"],
                       input=lines, check=True)
        tally = Tally()
        with b.running(spec, PythonInvoker(tally)):
            wait(lambda: tally.records >= count, 300)
            wait(lambda: store.stats(spec.uuid)["succeeded"] >= count, 30)
        out["mqtt_batch100"] = _rate(tally, count, store, spec.uuid)
        store.delete(spec.uuid)

        spec = store.create(function="bench", source=f"mqtt://127.0.0.1:{port}/lat/#")
        times: dict[int, float] = {}
        written: dict[int, float] = {}
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        publisher.connect("127.0.0.1", port)
        publisher.loop_start()
        with b.running(spec, PythonInvoker(Tally(times))):
            time.sleep(1.0)
            for n in range(n_lat):
                written[n] = time.time()
                publisher.publish("lat/a", b'{"n":%d}' % n, qos=1)
                time.sleep(0.02)
            wait(lambda: len(times) >= n_lat, 60)
        publisher.disconnect()
        publisher.loop_stop()
        out["mqtt_latency_batch1"] = summary(
            sorted(1000 * (times[n] - written[n]) for n in written if n in times), n_lat)
        store.delete(spec.uuid)
    return out


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# -- topics (through a real fleet) -----------------------------------------------------------

TOPIC_HANDLER = '''
import os, time, redis
r = redis.Redis.from_url(os.environ["BENCH_REDIS"])
def handler(event, context):
    now = time.time()
    key = event["Records"][0]["Sns"]["MessageId"] if "Records" in event else event["id"]
    r.hset(os.environ["BENCH_TIMES"], key, repr(now))
'''


def topic_latency(b: Bench, n_lat: int, slots: int) -> dict[str, Any]:
    from sources_fleet import fleet

    times = f"{b.prefix}:topic-times"
    with fleet(b.prefix, slots) as (client, _pid), tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / "bench"
        code.mkdir()
        (code / "app.py").write_text(TOPIC_HANDLER)
        client.create_function("benchtopic", code=code, handler="app.handler",
                               env={"BENCH_REDIS": b.tally_url, "BENCH_TIMES": times})
        client.create_topic("bench")
        client.subscribe("bench", "benchtopic")
        try:
            client.publish("bench", "warm-up")  # the relay picks the subscription up
            wait(lambda: b.tally.hlen(times) >= 1, 30)
            b.tally.delete(times)
            written: dict[str, float] = {}
            for n in range(n_lat):
                started = time.time()
                written[client.publish("bench", f"message {n}")] = started
                time.sleep(0.02)
            wait(lambda: b.tally.hlen(times) >= n_lat, 60)
            got = {k.decode(): float(v) for k, v in b.tally.hgetall(times).items()}
            # The same handler invoked asynchronously without a topic, for comparison.
            b.tally.delete(times)
            plain: dict[str, float] = {}
            for n in range(n_lat):
                plain[f"i{n}"] = time.time()
                client.invoke("benchtopic", {"id": f"i{n}"}, invocation_type="Event")
                time.sleep(0.02)
            wait(lambda: b.tally.hlen(times) >= n_lat, 60)
            got_plain = {k.decode(): float(v) for k, v in b.tally.hgetall(times).items()}
        finally:
            client.delete_topic("bench")
    out = summary(sorted(1000 * (got[m] - t) for m, t in written.items() if m in got), n_lat)
    out["path"] = "publish (confirmed) -> relay -> async -> router -> worker -> sandbox"
    out["async_invoke_same_run"] = summary(
        sorted(1000 * (got_plain[m] - t) for m, t in plain.items() if m in got_plain), n_lat)
    return out


COUNT_HANDLER = '''
import os, time, redis
r = redis.Redis.from_url(os.environ["BENCH_REDIS"])
def handler(event, context):
    now = time.time()
    n = len(event) if isinstance(event, list) else len(event.get("Records", [event]))
    pipe = r.pipeline(transaction=False)
    pipe.hsetnx(os.environ["BENCH_COUNT"], "first", repr(now))
    pipe.hincrby(os.environ["BENCH_COUNT"], "records", n)
    pipe.hset(os.environ["BENCH_COUNT"], "last", repr(time.time()))
    pipe.execute()
'''


def fleet_trigger_runs(b: Bench, count: int, slots: int) -> dict[str, Any]:
    """Table and MQTT at batch 100 through a real `warren up`: the poller invokes each batch
    synchronously through the fleet (a sandboxed handler counting in Redis)."""
    from sources_fleet import fleet

    store = MappingStore(b.redis, b.prefix, prepare=prepare_source, purge=purge_source)
    out: dict[str, Any] = {"slots": slots}
    with fleet(b.prefix, slots) as (client, _pid), tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / "bench"
        code.mkdir()
        (code / "app.py").write_text(COUNT_HANDLER)
        for kind in ("table", "mqtt"):
            key = f"{b.prefix}:fleet-count:{kind}"
            client.create_function(f"bench-{kind}", code=code, handler="app.handler",
                                   env={"BENCH_REDIS": b.tally_url, "BENCH_COUNT": key})

            def seen(key: str = key) -> tuple[int, float, float]:
                got = {k.decode(): float(v) for k, v in b.tally.hgetall(key).items()}
                return int(got.get("records", 0)), got.get("first", 0.0), got.get("last", 0.0)

            with _filled(kind, store, f"bench-{kind}", count) as spec_id:
                wait(lambda seen=seen: seen()[0] >= count, 300)
                records, first, last = seen()
                elapsed = max(last - first, 1e-6)
                out[f"{kind}_batch100"] = {
                    "records": records, "seconds": round(elapsed, 3),
                    "complete": records >= count, "batch_size": 100,
                    "records_per_s": round(records / elapsed),
                    "succeeded": store.stats(spec_id)["succeeded"]}
            print(kind, out[f"{kind}_batch100"], flush=True)
    return out


@contextlib.contextmanager
def _filled(kind: str, store: MappingStore, function: str, count: int) -> Iterator[str]:
    """A mapping of `function` on a new table or MQTT topic holding `count` records."""
    if kind == "table":
        conn = psycopg.connect(PG.replace("postgres://", "postgresql://"), autocommit=True)
        table = f"bench_{uuid.uuid4().hex[:8]}"
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, n int, body text)")
        conn.execute(f"ALTER TABLE {table} REPLICA IDENTITY FULL")
        spec = store.create(function=function, source=f"{PG}?table=public.{table}",
                            batch_size=100)
        try:
            for first in range(0, count, 1000):
                conn.execute(f"INSERT INTO {table} SELECT g, g, 'row ' || g FROM "
                             "generate_series(%s::int, %s::int) g", (first, first + 999))
            yield spec.uuid
        finally:
            store.delete(spec.uuid)
            conn.execute(f"DROP TABLE {table}")
            conn.close()
        return
    with _broker() as port:
        spec = store.create(function=function, source=f"mqtt://127.0.0.1:{port}/bench/#",
                            batch_size=100)
        try:
            lines = b"".join(b'{"n":%d}\n' % n for n in range(count))
            subprocess.run(["mosquitto_pub", "-p", str(port), "-q", "1", "-t", "bench/a", "-l"],
                           input=lines, check=True)
            yield spec.uuid
        finally:
            store.delete(spec.uuid)


@contextlib.contextmanager
def _broker() -> Iterator[int]:
    """A private mosquitto that queues without limit (the stock one drops past 1000)."""
    port, tmp = _free_port(), tempfile.mkdtemp(prefix="warren-bench-mqtt-")
    conf = Path(tmp) / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                    "max_queued_messages 0\nmax_inflight_messages 0\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait(lambda: _answers(port), 10)
        yield port
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def trigger_runs(b: Bench, count: int, n_lat: int, slots: int) -> dict[str, Any]:
    """The three triggers beside a Redis stream of the same size, in one run."""
    out: dict[str, Any] = {}
    name = f"{b.prefix}-stream-{uuid.uuid4().hex[:6]}"
    fill_stream(b.redis, name, count)
    spec = b.store.create(function="bench", source=f"redis+stream:///{name}", batch_size=100)
    tally = Tally()
    with b.running(spec, PythonInvoker(tally)):
        wait(lambda: tally.records >= count, 300)
    out["stream_batch100"] = _rate(tally, count, b.store, spec.uuid)
    b.store.purge(spec.uuid)
    b.redis.delete(name)
    out["stream_latency_batch1"] = latency(b, "stream", n_lat, PythonInvoker(_noting(b)),
                                           f"{b.prefix}:times")
    out.update(table_runs(b, count, n_lat))
    out.update(mqtt_runs(b, count, n_lat))
    out["topic_latency_fleet"] = topic_latency(b, n_lat, slots)
    out["fleet"] = fleet_trigger_runs(b, count // 2, slots)
    return out


def _noting(b: Bench) -> Any:
    import base64

    def handler(event: dict[str, Any], context: Any) -> None:
        now = time.time()
        ns = [orjson.loads(base64.b64decode(x["kinesis"]["data"]))["n"] for x in event["Records"]]
        b.tally.hset(f"{b.prefix}:times", mapping={str(n): repr(now) for n in ns})

    return handler

