"""Lambda's batching and failure rules on an ordered source: a real Redis stream, real handlers."""

from __future__ import annotations

import base64
import threading
import time

import orjson
import pytest
from support.mappings import Harness, wait_for

from router.batching.invoker import InvokeReply, PythonInvoker


@pytest.fixture
def h(redis_url, amqp_url, unique):
    harness = Harness(redis_url, amqp_url, f"wt-{unique}")
    yield harness
    harness.cleanup()


def _decode(record: dict) -> dict:
    return orjson.loads(base64.b64decode(record["kinesis"]["data"]))


class Recorder:
    """A Lambda handler that keeps every batch it saw and fails on the records it is told to."""

    def __init__(self, poison=(), partial=False):
        self.batches: list[list[int]] = []
        self.poison = set(poison)
        self.partial = partial
        self.lock = threading.Lock()

    def __call__(self, event, context):
        numbers = [_decode(r)["n"] for r in event["Records"]]
        with self.lock:
            self.batches.append(numbers)
        bad = [r for r in event["Records"] if _decode(r)["n"] in self.poison]
        if bad and self.partial:
            return {"batchItemFailures": [{"itemIdentifier": r["kinesis"]["sequenceNumber"]}
                                          for r in bad]}
        if bad:
            raise ValueError(f"poison {[_decode(r)['n'] for r in bad]}")
        return None

    @property
    def seen(self) -> list[int]:
        return [n for b in self.batches for n in b]


def _fill(h, stream: str, count: int, start: int = 0) -> list[str]:
    pipe = h.redis.pipeline()
    for n in range(start, start + count):
        pipe.xadd(stream, {"data": orjson.dumps({"n": n})})
    return [i.decode() for i in pipe.execute()]


def test_every_record_arrives_once_in_order_in_batches_of_at_most_batch_size(h):
    stream = f"{h.prefix}-src"
    _fill(h, stream, 1000)
    spec = h.store.create(function="rec", source=f"redis+stream:///{stream}", batch_size=100)
    handler = Recorder()
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: len(handler.seen) >= 1000, what="1000 records")
    h.stop_all()
    assert handler.seen == list(range(1000))
    assert max(len(b) for b in handler.batches) <= 100
    assert h.redis.xpending(stream, f"warren-{spec.uuid}")["pending"] == 0
    stats = h.store.stats(spec.uuid)
    assert (stats["read"], stats["invoked"], stats["succeeded"], stats["failed"]) == (
        1000, 1000, 1000, 0)


def test_a_failing_batch_blocks_the_stream_until_it_is_given_up_then_goes_to_the_destination(h):
    stream, dlq = f"{h.prefix}-src", f"{h.prefix}-dlq"
    ids = _fill(h, stream, 30)
    spec = h.store.create(function="rec", source=f"redis+stream:///{stream}", batch_size=10,
                          max_retries=2, on_failure=f"redis+stream:///{dlq}")
    handler = Recorder(poison={15})
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: 29 in handler.seen, what="the records after the poison batch")
    h.stop_all()
    # Batch 10..19 was tried 1 + 2 times, and nothing newer ran before it was given up.
    assert handler.batches == [list(range(10))] + [list(range(10, 20))] * 3 + [list(range(20, 30))]
    [record] = h.destination_records(dlq)
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["responseContext"]["functionError"] == "Unhandled"
    info = record["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        ids[10], ids[19], 10)
    assert record["recordIds"] == ids[10:20]
    assert h.redis.xpending(stream, f"warren-{spec.uuid}")["pending"] == 0
    stats = h.store.stats(spec.uuid)
    assert (stats["succeeded"], stats["failed"], stats["destination"]) == (20, 10, 10)


def test_bisect_isolates_the_poison_record_and_only_it_is_given_up(h):
    stream, dlq = f"{h.prefix}-src", f"{h.prefix}-dlq"
    ids = _fill(h, stream, 16)
    spec = h.store.create(function="rec", source=f"redis+stream:///{stream}", batch_size=16,
                          bisect=True, max_retries=1, on_failure=f"redis+stream:///{dlq}")
    handler = Recorder(poison={5})
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: h.store.stats(spec.uuid)["succeeded"] == 15, what="the 15 good records")
    h.stop_all()
    assert sorted(set(handler.seen)) == list(range(16))
    # Halving without spending the quota, then [5] tried 1 + 1 times alone, all in order.
    assert handler.batches == [
        list(range(16)), list(range(8)), list(range(4)), [4, 5, 6, 7], [4, 5], [4], [5], [5],
        [6, 7], list(range(8, 16)),
    ]
    [record] = h.destination_records(dlq)
    assert record["recordIds"] == [ids[5]]
    assert record["requestContext"]["approximateInvokeCount"] == 2


def test_reported_item_failures_checkpoint_at_the_lowest_failed_record(h):
    stream = f"{h.prefix}-src"
    _fill(h, stream, 10)
    spec = h.store.create(function="rec", source=f"redis+stream:///{stream}", batch_size=10,
                          report_item_failures=True, max_retries=1)
    handler = Recorder(poison={4, 7}, partial=True)
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: h.store.stats(spec.uuid)["failed"] == 2, what="two given up")
    h.stop_all()
    # 0..3 done; 4..9 retried from the lowest failure; then 4 and 7 exhausted, 5,6,8,9 rerun.
    assert handler.batches[0] == list(range(10))
    assert handler.batches[1] == list(range(4, 10))
    assert handler.batches[2:] == [[5, 6, 8, 9]]
    assert h.store.stats(spec.uuid)["succeeded"] == 8


@pytest.mark.parametrize(
    "response",
    [
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"itemId": "x"}]},
        {"batchItemFailures": [{"itemIdentifier": "9999999999999-0"}]},
        {"batchItemFailures": "all"},
    ],
)
def test_a_malformed_partial_response_fails_the_whole_batch(h, response):
    stream = f"{h.prefix}-src"
    _fill(h, stream, 3)
    spec = h.store.create(function="rec", source=f"redis+stream:///{stream}", batch_size=3,
                          report_item_failures=True, max_retries=1)
    calls = []

    def handler(event, context):
        calls.append(len(event["Records"]))
        return response

    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: h.store.stats(spec.uuid)["failed"] == 3, what="the batch given up")
    h.stop_all()
    assert calls == [3, 3]


@pytest.mark.parametrize("response", [None, "", {}, {"batchItemFailures": []},
                                      {"batchItemFailures": None}, "ok"])
def test_empty_or_null_partial_responses_are_complete_successes(h, response):
    stream = f"{h.prefix}-src"
    _fill(h, stream, 3)
    spec = h.store.create(function="rec", source=f"redis+stream:///{stream}", batch_size=3,
                          report_item_failures=True, max_retries=0)
    h.start(h.runner(spec, PythonInvoker(lambda e, c: response)))
    wait_for(lambda: h.store.stats(spec.uuid)["succeeded"] == 3, what="success")
    h.stop_all()
    assert h.store.stats(spec.uuid)["failed"] == 0


def test_records_older_than_max_age_are_given_up_without_being_invoked(h):
    stream, dlq = f"{h.prefix}-src", f"{h.prefix}-dlq"
    old_ms = int((time.time() - 600) * 1000)
    h.redis.xadd(stream, {"data": b'{"n": 0}'}, id=f"{old_ms}-0")
    h.redis.xadd(stream, {"data": b'{"n": 1}'}, id=f"{old_ms}-1")
    _fill(h, stream, 2, start=2)
    spec = h.store.create(function="rec", source=f"redis+stream:///{stream}", batch_size=10,
                          max_age_s=60, on_failure=f"redis+stream:///{dlq}")
    handler = Recorder()
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: h.store.stats(spec.uuid)["succeeded"] == 2, what="the fresh records")
    h.stop_all()
    assert handler.seen == [2, 3]
    [record] = h.destination_records(dlq)
    assert record["requestContext"]["condition"] == "RecordAgeExceeded"
    assert record["recordIds"] == [f"{old_ms}-0", f"{old_ms}-1"]


class Throttled:
    """An invoker whose first `n` calls are throttled (429) before reaching the handler."""

    takes_encoded_events = False

    def __init__(self, n, inner):
        self.n, self.inner, self.calls = n, inner, 0

    def invoke(self, function_ref, event):
        self.calls += 1
        if self.calls <= self.n:
            return InvokeReply(False, throttled=True, retry_after_s=0.01, error="throttled")
        return self.inner.invoke(function_ref, event)

    def close(self):
        self.inner.close()


def test_throttles_do_not_spend_the_retry_quota(h):
    stream = f"{h.prefix}-src"
    _fill(h, stream, 5)
    spec = h.store.create(function="rec", source=f"redis+stream:///{stream}", batch_size=5,
                          max_retries=0)
    handler = Recorder()
    invoker = Throttled(4, PythonInvoker(handler))
    h.start(h.runner(spec, invoker))
    wait_for(lambda: handler.seen == list(range(5)), what="delivery after throttles")
    h.stop_all()
    assert invoker.calls == 5
    assert h.store.stats(spec.uuid)["failed"] == 0


def test_filtered_records_are_checkpointed_and_never_invoked(h):
    stream = f"{h.prefix}-src"
    _fill(h, stream, 20)
    h.redis.xadd(stream, {"data": b"not json"})
    spec = h.store.create(function="rec", source=f"redis+stream:///{stream}", batch_size=100,
                          filters=['{"data": {"n": [{"numeric": [">=", 15]}]}}'])
    handler = Recorder()
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: h.store.stats(spec.uuid)["filtered"] == 16, what="filtering")
    h.stop_all()
    assert handler.seen == [15, 16, 17, 18, 19]
    assert h.redis.xpending(stream, f"warren-{spec.uuid}")["pending"] == 0


def test_a_batch_never_passes_the_6_mb_payload_cap(h):
    stream = f"{h.prefix}-src"
    blob = "x" * (1024 * 1024)
    for n in range(8):
        h.redis.xadd(stream, {"data": orjson.dumps({"n": n, "blob": blob})})
    spec = h.store.create(function="rec", source=f"redis+stream:///{stream}", batch_size=10)
    sizes = []

    def handler(event, context):
        sizes.append((len(event["Records"]), len(orjson.dumps(event))))

    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: sum(n for n, _ in sizes) == 8, what="8 records")
    h.stop_all()
    assert len(sizes) >= 2
    assert all(size <= 6 * 1024 * 1024 for _, size in sizes)


def test_the_batching_window_gathers_a_trickle_into_one_batch(h):
    stream = f"{h.prefix}-src"
    spec = h.store.create(function="rec", source=f"redis+stream:///{stream}", batch_size=50,
                          window_s=2)
    handler = Recorder()
    h.start(h.runner(spec, PythonInvoker(handler)))
    for n in range(5):
        _fill(h, stream, 1, start=n)
        time.sleep(0.1)
    wait_for(lambda: len(handler.seen) == 5, what="the window")
    h.stop_all()
    assert handler.batches == [[0, 1, 2, 3, 4]]
