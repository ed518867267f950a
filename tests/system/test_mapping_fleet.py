"""Mappings end to end through a real fleet (`warren up`): source -> poller -> worker -> handler."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import orjson
import pytest
from support.fleet import drop_queues
from support.mappings import RECORDER, wait_for

from warren.client import Client
from warren.settings import Settings
from warren.store.mappings import MappingStore

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture
def fleet(request, redis_url, amqp_url, unique, tmp_path):
    """A `warren up` (router, worker, poller) under a unique prefix; stopped by PID after.

    Its poller takes batch results the way `request.param` names (default: Redis lists).
    """
    prefix = f"wf-{unique}"
    reply = getattr(request, "param", "redis")
    proc, log = _start_up(prefix, amqp_url, redis_url, tmp_path, mapping_reply=reply)
    settings = Settings.from_environ({"WARREN_PREFIX": prefix}, amqp_url=amqp_url,
                                     redis_url=redis_url)
    client = Client.from_settings(settings)
    store = MappingStore(client.redis, prefix, functions=client.registry)
    try:
        yield client, store, prefix
    finally:
        _stop_fleet(proc, log, client, prefix)


def _start_up(prefix, amqp_url, redis_url, tmp_path, mapping_reply="redis", lane="redis"):
    """`warren up` (router, worker, poller) for `prefix`, its output in tmp_path/up.log."""
    env = {**os.environ, "WARREN_PREFIX": prefix, "WARREN_REDIS_URL": redis_url,
           "WARREN_AMQP_URL": amqp_url, "PYTHONPATH": str(ROOT),
           "WARREN_MAPPING_SYNC_REPLY": mapping_reply, "WARREN_SYNC_LANE": lane}
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115 - closed by _stop_fleet
    proc = subprocess.Popen([sys.executable, "-m", "warren", "up", "--slots", "2"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                            start_new_session=True)
    return proc, log


def _stop_fleet(proc, log, client, prefix):
    """SIGTERM the `warren up` tree (SIGKILL past 60 s), then remove the test's Redis keys."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()
    keys = list(client.redis.scan_iter(f"{prefix}*"))
    if keys:
        client.redis.delete(*keys)
    client.close()
    drop_queues(client.settings.amqp, prefix)


def _recorder(client, tmp_path, name, redis_url, key, sleep_s=None, **options):
    code = tmp_path / name
    code.mkdir()
    shutil.copy(RECORDER, code / "recorder.py")
    env = {"RECORDER_REDIS_URL": redis_url, "RECORDER_KEY": key}
    if sleep_s is not None:
        env["RECORDER_SLEEP_S"] = str(sleep_s)
    client.create_function(name, code=code, handler="recorder.handler", env=env, **options)


def _wait(predicate, timeout=90.0, what=""):
    wait_for(predicate, timeout, what)


@pytest.mark.parametrize("fleet", ["redis", "amqp"], indirect=True)
def test_every_stream_record_reaches_a_real_handler_once(fleet, own_redis, tmp_path):
    client, store, prefix = fleet
    seen_key, stream = f"{prefix}:seen", f"{prefix}-src"
    _recorder(client, tmp_path, "recorder", own_redis.url, seen_key)
    pipe = client.redis.pipeline()
    for n in range(2000):
        pipe.xadd(stream, {"data": orjson.dumps({"n": n})})
    pipe.execute()
    spec = store.create(function="recorder", source=f"redis+stream:///{stream}", batch_size=100)
    _wait(lambda: own_redis.client.hlen(seen_key) == 2000, what="2000 records")
    seen = {int(k): int(v) for k, v in own_redis.client.hgetall(seen_key).items()}
    assert sorted(seen) == list(range(2000)) and set(seen.values()) == {1}
    _wait(lambda: store.stats(spec.uuid)["succeeded"] == 2000, what="the counters")
    assert store.get(spec.uuid).state == "Enabled"


def test_a_parallel_stream_keeps_order_per_key_through_the_fleet(fleet, own_redis, tmp_path):
    client, store, prefix = fleet
    seen_key, stream = f"{prefix}:seen", f"{prefix}-src"
    code = tmp_path / "lanes"
    code.mkdir()
    shutil.copy(RECORDER, code / "recorder.py")
    client.create_function("lanes", code=code, handler="recorder.handler", env={
        "RECORDER_REDIS_URL": own_redis.url, "RECORDER_KEY": seen_key,
        "RECORDER_ORDER_KEY": f"{seen_key}:order", "RECORDER_SLEEP_S": "0.02"})
    keys = [f"device-{i}" for i in range(8)]
    pipe = client.redis.pipeline()
    for n in range(2000):
        pipe.xadd(stream, {"data": orjson.dumps({"n": n}), "partitionKey": keys[n % 8]})
    pipe.execute()
    spec = store.create(function="lanes", source=f"redis+stream:///{stream}", batch_size=50,
                        parallelization_factor=4)
    _wait(lambda: own_redis.client.hlen(seen_key) == 2000, what="2000 records")
    seen = {int(k): int(v) for k, v in own_redis.client.hgetall(seen_key).items()}
    assert sorted(seen) == list(range(2000)) and set(seen.values()) == {1}
    for i, key in enumerate(keys):
        order = [int(n) for n in own_redis.client.lrange(f"{seen_key}:order:{key}", 0, -1)]
        assert order == list(range(i, 2000, 8)), f"{key} out of order"
    _wait(lambda: store.stats(spec.uuid)["succeeded"] == 2000, what="the counters")


def test_an_unchanged_lambda_handler_reports_a_bad_record_which_alone_is_given_up(fleet):
    client, store, prefix = fleet
    stream, dlq = f"{prefix}-orders", f"{prefix}-failed"
    client.create_function("orders", code=ROOT / "examples" / "stream_decoder",
                           handler="app.handler")
    ids = []
    for n in range(30):
        order = {"order": n, "qty": 1, "price": 2.0} if n != 17 else {"order": n}
        ids.append(client.redis.xadd(stream, {"data": orjson.dumps(order)}).decode())
    spec = store.create(function="orders", source=f"redis+stream:///{stream}", batch_size=10,
                        report_item_failures=True, max_retries=2,
                        on_failure=f"redis+stream:///{dlq}")
    _wait(lambda: store.stats(spec.uuid)["failed"] == 1, what="the bad record given up")
    _wait(lambda: store.stats(spec.uuid)["succeeded"] == 29, what="the 29 good ones")
    [(_, fields)] = client.redis.xrange(dlq)
    record = orjson.loads(fields[b"record"])
    assert record["recordIds"] == [ids[17]]
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3


def test_throttles_are_not_attempts_through_the_fleet(fleet, own_redis, tmp_path):
    client, store, prefix = fleet
    seen_key, stream = f"{prefix}:seen", f"{prefix}-src"
    _recorder(client, tmp_path, "held", own_redis.url, seen_key)
    client.set_concurrency("held", 0)  # every invocation is throttled (429)
    for n in range(5):
        client.redis.xadd(stream, {"data": orjson.dumps({"n": n})})
    spec = store.create(function="held", source=f"redis+stream:///{stream}", batch_size=5,
                        max_retries=0)
    time.sleep(4)
    assert own_redis.client.hlen(seen_key) == 0
    assert store.stats(spec.uuid)["failed"] == 0  # throttled, not given up
    client.clear_concurrency("held")
    _wait(lambda: own_redis.client.hlen(seen_key) == 5, what="delivery once unthrottled")
    assert store.stats(spec.uuid)["failed"] == 0


def test_new_and_overwritten_objects_reach_the_handler_with_their_keys_decoded(
        fleet, own_redis, s3_endpoint, tmp_path):
    client, store, prefix = fleet
    seen_key, bucket = f"{prefix}:seen", f"{prefix}-bucket"
    _recorder(client, tmp_path, "objects", own_redis.url, seen_key, memory_mb=256)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    store.create(function="objects", source=f"s3://{bucket}/in/?endpoint={s3_endpoint}")
    keys = ["in/plain.txt", "in/with space.txt", "in/a+b.txt", "in/ünïcødé €.txt"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"v1")
    s3.put_object(Bucket=bucket, Key="elsewhere/skip.txt", Body=b"x")
    _wait(lambda: own_redis.client.hlen(seen_key) == 4, what="4 objects")
    s3.put_object(Bucket=bucket, Key="in/a+b.txt", Body=b"version two")
    _wait(lambda: int(own_redis.client.hget(seen_key, "in/a+b.txt") or 0) == 2,
          what="the overwrite")
    seen = {k.decode(): int(v) for k, v in own_redis.client.hgetall(seen_key).items()}
    assert seen == {"in/plain.txt": 1, "in/with space.txt": 1, "in/a+b.txt": 2,
                    "in/ünïcødé €.txt": 1}
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
    s3.delete_bucket(Bucket=bucket)


@pytest.mark.parametrize("lane", ["amqp", "redis"])
def test_a_20_s_broker_outage_during_a_stream_run_loses_nothing(
        redis_url, amqp_url, unique, tmp_path, own_redis, lane):
    """The fleet reaches RabbitMQ through a proxy that is cut for 20 s mid-run. With the batch
    invokes on RabbitMQ's sync lane the run stops and acks nothing meanwhile; on the Redis lane
    (the default) it goes on through the outage."""
    from urllib.parse import urlsplit

    from support.proxy import CuttableProxy

    parts = urlsplit(amqp_url)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5672))
    proxied = f"amqp://{parts.username}:{parts.password}@127.0.0.1:{proxy.port}{parts.path}"
    prefix = f"wo-{unique}"
    proc, log = _start_up(prefix, proxied, redis_url, tmp_path, lane=lane)
    client = Client.from_settings(Settings.from_environ({"WARREN_PREFIX": prefix},
                                                        amqp_url=amqp_url, redis_url=redis_url))
    store = MappingStore(client.redis, prefix)
    seen_key, stream = f"{prefix}:seen", f"{prefix}-src"
    try:
        _recorder(client, tmp_path, "rec", own_redis.url, seen_key, sleep_s=0.05)
        for n in range(3000):
            client.redis.xadd(stream, {"data": orjson.dumps({"n": n})})
        spec = store.create(function="rec", source=f"redis+stream:///{stream}", batch_size=20)
        group = f"warren-{spec.uuid}"
        _wait(lambda: own_redis.client.hlen(seen_key) >= 300, what="the run to get going")
        proxy.cut()
        time.sleep(2)  # what was in flight settles
        acked = store.stats(spec.uuid)["succeeded"]
        seen_at_cut = own_redis.client.hlen(seen_key)
        time.sleep(18)
        if lane == "amqp":
            # While the broker is unreachable nothing more is invoked, and nothing more acked
            assert own_redis.client.hlen(seen_key) == seen_at_cut
            assert store.stats(spec.uuid)["succeeded"] == acked
        else:
            # The batch invokes need no broker: the run went on meanwhile
            assert own_redis.client.hlen(seen_key) > seen_at_cut
            assert store.stats(spec.uuid)["succeeded"] > acked
        assert store.stats(spec.uuid)["failed"] == 0
        lag = client.redis.xinfo_groups(stream)[0]
        assert lag["name"].decode() == group
        proxy.restore()
        _wait(lambda: own_redis.client.hlen(seen_key) == 3000, timeout=120, what="all 3000 after")
        _wait(lambda: store.stats(spec.uuid)["succeeded"] >= 3000, what="all acked")
        assert client.redis.xpending(stream, group)["pending"] == 0
        assert store.stats(spec.uuid)["failed"] == 0
    finally:
        _stop_fleet(proc, log, client, prefix)
        proxy.close()
