"""The poller: one owner per mapping through leases, spread, states, and takeover after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pika
import pytest
import redis
from support.fleet import stop_process

from broker_adapters.poller import Poller
from warren.store.mappings import MappingStore

MAIN = Path(__file__).parents[1] / "support" / "poller_main.py"


class IdleRunner:
    """Stands in for a mapping's runner: serves nothing, records that it ran."""

    def __init__(self, log, spec):
        self.log, self.spec = log, spec

    def run(self, stop):
        self.log.append(("start", self.spec.uuid, self.spec.revision))
        stop.wait()
        self.log.append(("stop", self.spec.uuid, self.spec.revision))


@pytest.fixture
def store(redis_url, unique):
    client = redis.Redis.from_url(redis_url)
    prefix = f"wp-{unique}"
    yield MappingStore(client, prefix)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def _poller(store, name, log, lease_s=2.0):
    return Poller(store, lambda spec, _pid: IdleRunner(log, spec), poller_id=name,
                  lease_s=lease_s, tick_s=0.1, join_s=5)


def _create(store, n):
    return [store.create(function="f", source=f"redis+stream:///s{i}") for i in range(n)]


def test_each_mapping_runs_on_exactly_one_poller_and_they_spread(store):
    specs = _create(store, 4)
    log: list = []
    a, b = _poller(store, "a", log), _poller(store, "b", log)
    try:
        # A poller sheds one mapping at a time, once the one it shed before has stopped: on a
        # busy machine that takes more rounds than on an idle one.
        deadline = time.monotonic() + 10
        while True:
            a.tick()
            b.tick()
            if len(a.owned) == len(b.owned) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert sorted(a.owned + b.owned) == sorted(s.uuid for s in specs)
        assert not set(a.owned) & set(b.owned)
        assert len(a.owned) == len(b.owned) == 2
        for spec in specs:
            holder = store.redis.get(store.key(spec.uuid, "lease")).decode()
            assert spec.uuid in (a.owned if holder == "a" else b.owned)
    finally:
        a.shutdown()
        b.shutdown()
    starts = [e for e in log if e[0] == "start"]
    assert len({e[1] for e in starts}) == 4


def test_a_dead_pollers_mappings_are_taken_over_after_its_lease(store):
    [spec] = _create(store, 1)
    log: list = []
    a, b = _poller(store, "a", log, lease_s=1.0), _poller(store, "b", log, lease_s=1.0)
    a.tick()
    b.tick()
    assert a.owned == [spec.uuid] and b.owned == []
    # a dies without a word: it stops ticking.
    died = time.monotonic()
    while spec.uuid not in b.owned:
        b.tick()
        time.sleep(0.05)
        assert time.monotonic() - died < 5
    assert store.redis.get(store.key(spec.uuid, "lease")) == b"b"
    # a wakes up (a zombie): its next tick finds the lease gone and stops its runner.
    a.tick()
    assert a.owned == []
    b.shutdown()
    a.shutdown()


def test_the_poller_completes_lambdas_transitional_states(store):
    store.redis.zadd(f"{store.prefix}:pollers", {"a": int(time.time() * 1000) + 60_000})
    [spec] = _create(store, 1)
    assert spec.state == "Creating"
    log: list = []
    a = _poller(store, "a", log)
    try:
        a.tick()
        assert store.get(spec.uuid).state == "Enabled"
        store.update(spec.uuid, batch_size=7)
        assert store.get(spec.uuid).state == "Updating"
        for _ in range(3):
            a.tick()
            time.sleep(0.05)
        assert store.get(spec.uuid).state == "Enabled"
        assert ("start", spec.uuid, 2) in log  # restarted with the new settings
        assert store.disable(spec.uuid).state == "Disabling"
        for _ in range(3):
            a.tick()
            time.sleep(0.05)
        assert store.get(spec.uuid).state == "Disabled"
        assert a.owned == []
        assert store.enable(spec.uuid).state == "Enabling"
        a.tick()
        assert store.get(spec.uuid).state == "Enabled"
        assert store.delete(spec.uuid).state == "Deleting"
        for _ in range(3):
            a.tick()
            time.sleep(0.05)
        assert store.list_mappings() == []
        assert not list(store.redis.scan_iter(store.key(spec.uuid, "*")))
    finally:
        a.shutdown()


def test_a_crashed_runner_is_restarted(store):
    [spec] = _create(store, 1)
    runs = []

    class Crashing:
        def run(self, stop):
            runs.append(time.monotonic())
            if len(runs) == 1:
                raise RuntimeError("boom")
            stop.wait()

    a = Poller(store, lambda s, p: Crashing(), poller_id="a", lease_s=2, tick_s=0.1)
    try:
        for _ in range(5):
            a.tick()
            time.sleep(0.05)
        assert len(runs) == 2
    finally:
        a.shutdown()


# -- kill -9 of a real poller process, through real sources -------------------------------------

def _spawn(redis_url, amqp_url, prefix, seen_key, lease_s=8.0, sleep_s=0.1):
    env = {**os.environ, "RECORDER_REDIS_URL": redis_url, "RECORDER_KEY": seen_key,
           "RECORDER_SLEEP_S": str(sleep_s), "RECORDER_ORDER_KEY": f"{seen_key}:order"}
    return subprocess.Popen(
        [sys.executable, str(MAIN), redis_url, amqp_url, prefix, str(lease_s)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _seen(client, key):
    return {int(k): int(v) for k, v in client.hgetall(key).items()}


def _kill_and_take_over(store, source, count, redis_url, amqp_url, batch_size=100,
                        in_flight_batches=2, parallelization_factor=1):
    seen_key = f"{store.prefix}:seen"
    spec = store.create(function="recorder", source=source, batch_size=batch_size,
                        parallelization_factor=parallelization_factor)
    first = _spawn(redis_url, amqp_url, store.prefix, seen_key)
    second = None
    try:
        deadline = time.monotonic() + 60
        while len(_seen(store.redis, seen_key)) < count // 5:
            assert time.monotonic() < deadline, "the first poller never got going"
            time.sleep(0.05)
        second = _spawn(redis_url, amqp_url, store.prefix, seen_key)
        time.sleep(1.5)  # the second poller is up, idle: the mapping is the first one's
        assert store.redis.get(store.key(spec.uuid, "lease")) != b""
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        killed_at = time.monotonic()
        before = len(_seen(store.redis, seen_key))
        assert before < count, "the first poller finished before it was killed"
        while len(_seen(store.redis, seen_key)) == before:
            assert time.monotonic() - killed_at < 15, "no takeover within 15 s"
            time.sleep(0.05)
        took_over_s = time.monotonic() - killed_at
        while len(_seen(store.redis, seen_key)) < count:
            assert time.monotonic() - killed_at < 120, "records missing after takeover"
            time.sleep(0.1)
        time.sleep(1.0)
        seen = _seen(store.redis, seen_key)
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)
    assert sorted(seen) == list(range(count)), "a record was skipped"
    duplicates = sum(v - 1 for v in seen.values())
    # Only what the killed poller had in flight (invoked, not yet acked) may come twice.
    assert duplicates <= in_flight_batches * batch_size, duplicates
    print(f"\ntakeover after {took_over_s:.1f} s, {duplicates} duplicate(s)")
    return took_over_s


@pytest.mark.slow
def test_kill_9_of_a_stream_poller_loses_and_skips_nothing(store, redis_url, amqp_url):
    stream = f"{store.prefix}-src"
    pipe = store.redis.pipeline()
    for n in range(10_000):
        pipe.xadd(stream, {"data": orjson.dumps({"n": n})})
    pipe.execute()
    took = _kill_and_take_over(store, f"redis+stream:///{stream}", 10_000, redis_url, amqp_url)
    assert took < 15


@pytest.mark.slow
def test_kill_9_of_a_parallel_stream_poller_keeps_order_per_key(store, redis_url, amqp_url):
    stream = f"{store.prefix}-src"
    keys = [f"device-{i}" for i in range(12)]
    pipe = store.redis.pipeline()
    for n in range(10_000):
        key = keys[n % len(keys)]
        pipe.xadd(stream, {"data": orjson.dumps({"n": n}), "partitionKey": key})
    pipe.execute()
    # Only the four lanes' batches in flight can come twice (read-ahead never ran).
    took = _kill_and_take_over(store, f"redis+stream:///{stream}", 10_000, redis_url, amqp_url,
                               in_flight_batches=4, parallelization_factor=4)
    assert took < 15
    for key in keys:
        seen = [int(n) for n in store.redis.lrange(f"{store.prefix}:seen:order:{key}", 0, -1)]
        # A redelivery after the takeover may repeat a run of records, but no record of a key
        # ran before every earlier record of that key had run at least once.
        done: set[int] = set()
        mine = [n for n in range(10_000) if keys[n % len(keys)] == key]
        for n in seen:
            position = mine.index(n)
            assert set(mine[:position]) <= done, f"{key}: {n} ran before an earlier record"
            done.add(n)
        assert done == set(mine)


@pytest.mark.slow
def test_kill_9_of_a_queue_poller_loses_and_skips_nothing(store, redis_url, amqp_url):
    name = f"{store.prefix}-src"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_declare(name, durable=True)
    channel.confirm_delivery()
    try:
        for n in range(10_000):
            channel.basic_publish("", name, orjson.dumps({"n": n}),
                                  pika.BasicProperties(message_id=f"m-{n}", delivery_mode=2))
        uri = amqp_url.rstrip("/").rsplit("/", 1)[0] + f"/%2F/{name}"
        # A queue mapping runs up to 5 batches at once (plus one being gathered).
        took = _kill_and_take_over(store, uri, 10_000, redis_url, amqp_url, in_flight_batches=6)
        assert took < 15
        assert channel.queue_declare(name, passive=True).method.message_count == 0
    finally:
        channel.queue_delete(name)
        connection.close()


def test_a_poller_shutting_down_hands_its_mappings_back_at_once(store):
    [spec] = _create(store, 1)
    log: list = []
    a, b = _poller(store, "a", log, lease_s=30), _poller(store, "b", log, lease_s=30)
    a.tick()
    assert a.owned == [spec.uuid]
    done = threading.Event()
    a.shutdown()
    done.set()
    b.tick()
    assert b.owned == [spec.uuid]  # no need to wait 30 s for the lease to expire
    b.shutdown()
