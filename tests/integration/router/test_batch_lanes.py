"""ParallelizationFactor on a real Redis stream: lanes by partition key, order per key, failures."""

from __future__ import annotations

import base64
import random
import threading
import time

import orjson
import pytest
from support.mappings import Harness, wait_for

from router.batching.invoker import PythonInvoker
from router.batching.lanes import Lanes, Work
from warren.source import SourceRecord


@pytest.fixture
def h(redis_url, amqp_url, unique):
    harness = Harness(redis_url, amqp_url, f"wl-{unique}")
    yield harness
    harness.cleanup()


def _lane(key: str, count: int) -> int:
    record = SourceRecord("0-1", b"", {"kinesis": {"partitionKey": key}}, 0, 0.0)
    return Lanes(count, batch_size=1, window_s=0).lane_of(record)


def _keys_in_distinct_lanes(count: int) -> list[str]:
    chosen: dict[int, str] = {}
    n = 0
    while len(chosen) < count:
        chosen.setdefault(_lane(f"key-{n}", count), f"key-{n}")
        n += 1
    return [chosen[i] for i in range(count)]


def _fill(h, stream: str, keys: list[str], count: int) -> None:
    """Records n = 0..count-1, n's key is keys[n % len(keys)]."""
    pipe = h.redis.pipeline()
    for n in range(count):
        key = keys[n % len(keys)]
        pipe.xadd(stream, {"data": orjson.dumps({"n": n, "k": key}), "partitionKey": key})
    pipe.execute()


class LaneRecorder:
    """A Lambda handler that logs every batch, sleeps a random time per record, counts overlap,
    and fails (whole batch, or through batchItemFailures) on records it is told to."""

    def __init__(self, poison=(), partial=False, fail_times=10**9, max_delay_s=0.0):
        self.batches: list[list[tuple[str, int]]] = []
        self.poison = set(poison)
        self.partial = partial
        self.fail_times = fail_times
        self.failed: dict[int, int] = {}
        self.max_delay_s = max_delay_s
        self.running = 0
        self.max_running = 0
        self.lock = threading.Lock()

    def __call__(self, event, context):
        items = [orjson.loads(base64.b64decode(r["kinesis"]["data"])) for r in event["Records"]]
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.batches.append([(i["k"], i["n"]) for i in items])
        try:
            for _ in items:
                time.sleep(random.uniform(0, self.max_delay_s))
            bad = []
            with self.lock:
                for record, item in zip(event["Records"], items, strict=True):
                    if item["n"] in self.poison and self.failed.get(item["n"], 0) < self.fail_times:
                        self.failed[item["n"]] = self.failed.get(item["n"], 0) + 1
                        bad.append(record["kinesis"]["sequenceNumber"])
            if bad and self.partial:
                return {"batchItemFailures": [{"itemIdentifier": b} for b in bad]}
            if bad:
                raise ValueError("poison")
            return None
        finally:
            with self.lock:
                self.running -= 1

    def per_key(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for batch in self.batches:
            for key, n in batch:
                out.setdefault(key, []).append(n)
        return out

    def seen(self) -> set[int]:
        return {n for batch in self.batches for _, n in batch}


def _pending(h, stream, spec) -> int:
    return int(h.redis.xpending(stream, f"warren-{spec.uuid}")["pending"])


def test_four_lanes_keep_order_per_key_under_random_delays_and_run_at_once(h):
    stream = f"{h.prefix}-src"
    keys = [f"user-{i}" for i in range(16)]
    _fill(h, stream, keys, 3000)
    spec = h.store.create(function="rec", source=f"redis+stream:///{stream}", batch_size=25,
                          parallelization_factor=4)
    handler = LaneRecorder(max_delay_s=0.0004)
    h.start(h.runner(spec, PythonInvoker(handler), concurrency=4))
    wait_for(lambda: len(handler.seen()) >= 3000, timeout=90, what="3000 records")
    wait_for(lambda: _pending(h, stream, spec) == 0, what="every record acked")
    h.stop_all()
    all_seen = [n for batch in handler.batches for _, n in batch]
    assert sorted(all_seen) == list(range(3000)), "a record was lost or invoked twice"
    for key, numbers in handler.per_key().items():
        assert numbers == sorted(numbers), f"records of {key} ran out of order"
    for batch in handler.batches:
        assert len({_lane(key, 4) for key, _ in batch}) == 1, "a batch mixed lanes"
        assert len(batch) <= 25
    assert handler.max_running > 1, "the lanes never ran at the same time"
    assert handler.max_running <= 4
    stats = h.store.stats(spec.uuid)
    assert (stats["read"], stats["succeeded"], stats["failed"]) == (3000, 3000, 0)


def test_a_failing_lane_stops_alone_and_resumes_in_order_after_a_handover(h):
    stream = f"{h.prefix}-src"
    keys = _keys_in_distinct_lanes(4)
    _fill(h, stream, keys, 200)  # 50 records per key, each key alone in its lane
    blocked = keys[1]
    poison = 1 + 4 * 20          # the 21st record of keys[1]
    spec = h.store.create(function="rec", source=f"redis+stream:///{stream}", batch_size=10,
                          parallelization_factor=4)
    handler = LaneRecorder(poison={poison})
    h.start(h.runner(spec, PythonInvoker(handler), concurrency=4))
    others = {n for n in range(200) if keys[n % 4] != blocked}
    wait_for(lambda: others <= handler.seen(), what="the other lanes to finish")
    wait_for(lambda: _pending(h, stream, spec) == 30, what="the blocked lane's records pending")
    time.sleep(0.3)
    h.stop_all()  # a clean handover: the blocked lane's records go back to the stream
    mine = handler.per_key()[blocked]
    assert max(mine) < poison + 4 * 10, "the blocked lane went past its failing batch"
    assert mine[:20] == list(range(1, poison, 4)), "records before the failing batch"
    assert set(mine[20:]) == set(range(poison, poison + 40, 4)), "only the failing batch retried"
    retried = len(mine[20:]) // 10
    assert retried >= 2

    after = LaneRecorder()
    h.start(h.runner(spec, PythonInvoker(after), concurrency=4))
    wait_for(lambda: _pending(h, stream, spec) == 0 and len(after.seen()) == 30,
             what="the blocked lane's records after the handover")
    h.stop_all()
    assert after.per_key() == {blocked: list(range(poison, 200, 4))}


def test_partial_failure_in_one_lane_retries_from_its_lowest_failed_record(h):
    stream = f"{h.prefix}-src"
    keys = _keys_in_distinct_lanes(2)
    _fill(h, stream, keys, 40)   # keys[0]: even n, keys[1]: odd n
    spec = h.store.create(function="rec", source=f"redis+stream:///{stream}", batch_size=10,
                          parallelization_factor=2, report_item_failures=True)
    handler = LaneRecorder(poison={6, 10}, partial=True, fail_times=2)
    h.start(h.runner(spec, PythonInvoker(handler), concurrency=2))
    wait_for(lambda: handler.seen() == set(range(40)) and _pending(h, stream, spec) == 0,
             what="every record done")
    h.stop_all()
    even = [[n for _, n in b] for b in handler.batches if b[0][0] == keys[0]]
    odd = [[n for _, n in b] for b in handler.batches if b[0][0] == keys[1]]
    first = list(range(0, 20, 2))
    rest = list(range(6, 20, 2))
    # The lane checkpoints at its lowest failed record (6) and retries from there, twice.
    assert even[:3] == [first, rest, rest]
    assert [n for b in even[3:] for n in b] == list(range(20, 40, 2))
    assert [n for b in odd for n in b] == list(range(1, 40, 2)), "the other lane was disturbed"
    assert h.store.stats(spec.uuid)["failed"] == 0


def test_a_lane_given_up_on_goes_to_the_destination_and_the_lane_moves_on(h):
    stream, dlq = f"{h.prefix}-src", f"{h.prefix}-dlq"
    keys = _keys_in_distinct_lanes(3)
    _fill(h, stream, keys, 90)
    spec = h.store.create(function="rec", source=f"redis+stream:///{stream}", batch_size=5,
                          parallelization_factor=3, max_retries=1, bisect=True,
                          on_failure=f"redis+stream:///{dlq}")
    handler = LaneRecorder(poison={4})  # keys[1]
    h.start(h.runner(spec, PythonInvoker(handler), concurrency=3))
    wait_for(lambda: len(handler.seen()) == 90 and _pending(h, stream, spec) == 0,
             what="every record done or given up")
    h.stop_all()
    records = h.destination_records(dlq)
    assert [r["KinesisBatchInfo"]["batchSize"] for r in records] == [1]
    assert records[0]["requestContext"]["condition"] == "RetryAttemptsExhausted"
    for key, numbers in handler.per_key().items():
        firsts = list(dict.fromkeys(numbers))
        assert firsts == sorted(firsts), f"{key} ran out of order"
    stats = h.store.stats(spec.uuid)
    assert (stats["succeeded"], stats["failed"], stats["destination"]) == (89, 1, 1)


def test_lanes_form_batches_within_the_window_and_the_payload_cap():
    def rec(i: int, key: str, size: int) -> SourceRecord:
        return SourceRecord(f"1-{i}", b"", {"kinesis": {"partitionKey": key}}, size, 0.0)

    lanes = Lanes(2, batch_size=3, window_s=1.0, max_bytes=10_000)
    key = "a"
    lanes.route([rec(1, key, 10), rec(2, key, 10)], now=100.0)
    index = lanes.lane_of(rec(0, key, 0))
    assert lanes.take(index, now=100.5) == []          # window still open, batch not full
    assert [r.id for r in lanes.take(index, now=101.0)] == ["1-1", "1-2"]
    lanes.route([rec(i, key, 4000) for i in range(3, 6)], now=102.0)
    assert [r.id for r in lanes.take(index, now=102.0)] == ["1-3", "1-4"]  # cap before size
    assert [r.id for r in lanes.take(index, now=103.0)] == ["1-5"]
    with pytest.raises(ValueError):
        Lanes(11, batch_size=1, window_s=0)


def test_reading_pauses_at_a_batch_per_lane_unless_a_lane_waits_on_a_retry():
    keys = _keys_in_distinct_lanes(2)

    def rec(i: int, key: str) -> SourceRecord:
        return SourceRecord(f"1-{i}", b"", {"kinesis": {"partitionKey": key}}, 10, 0.0)

    lanes = Lanes(2, batch_size=5, window_s=0, lane_cap=12)
    lanes.route([rec(i, keys[0]) for i in range(9)], now=0.0)
    assert lanes.can_read()
    lanes.route([rec(9, keys[1])], now=0.0)
    assert not lanes.can_read()               # 10 records: one batch per lane is waiting
    blocked = lanes.lanes[_lane(keys[0], 2)]
    blocked.pending.append(Work([]))          # keys[0]'s lane waits on a retry
    assert lanes.can_read()                   # ... so its records do not stop the others
    lanes.route([rec(i, keys[0]) for i in range(10, 13)], now=0.0)
    assert not lanes.can_read()               # until it holds lane_cap records
