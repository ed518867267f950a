"""Lambda's failure rules on an unordered source: a real RabbitMQ queue, real handlers."""

from __future__ import annotations

import base64
import threading
import time

import orjson
import pika
import pytest
from support.mappings import Harness, wait_for

from router.batching.invoker import PythonInvoker


@pytest.fixture
def h(redis_url, amqp_url, unique):
    harness = Harness(redis_url, amqp_url, f"wq-{unique}")
    yield harness
    harness.cleanup()


@pytest.fixture
def queue(amqp_url, unique):
    """A fresh durable queue, and a function publishing JSON messages to it."""
    name = f"wq-{unique}-src"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_declare(name, durable=True)
    channel.confirm_delivery()

    def publish(numbers):
        for n in numbers:
            channel.basic_publish(
                "", name, orjson.dumps({"n": n}),
                pika.BasicProperties(message_id=f"m-{n}", delivery_mode=2,
                                     timestamp=int(time.time())),
            )

    publish.name = name
    publish.uri = amqp_url.rstrip("/").rsplit("/", 1)[0] + f"/%2F/{name}"
    yield publish
    channel.queue_delete(name)
    connection.close()


def _numbers(event) -> list[int]:
    [(key, messages)] = event["rmqMessagesByQueue"].items()
    assert key.endswith("::/")
    return [orjson.loads(base64.b64decode(m["data"]))["n"] for m in messages]


class Recorder:
    def __init__(self, poison=(), partial=False, fail_once=(), sleep_s=0.0):
        self.calls: list[list[int]] = []
        self.poison, self.partial, self.fail_once = set(poison), partial, set(fail_once)
        self.sleep_s = sleep_s
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def __call__(self, event, context):
        numbers = _numbers(event)
        with self.lock:
            self.calls.append(numbers)
            self.running += 1
            self.peak = max(self.peak, self.running)
            bad = [n for n in numbers if n in self.poison or n in self.fail_once]
            self.fail_once -= set(bad)
        try:
            time.sleep(self.sleep_s)
        finally:
            with self.lock:
                self.running -= 1
        if bad and self.partial:
            return {"batchItemFailures": [{"itemIdentifier": f"m-{n}"} for n in bad]}
        if bad:
            raise RuntimeError(f"cannot process {bad}")
        return {"batchItemFailures": []}

    def seen(self):
        return [n for c in self.calls for n in c]


def test_partial_failures_are_retried_alone(h, queue):
    queue(range(10))
    # A window lets the first batch fill up to all ten even when the broker hands the
    # messages over in more than one read (as it may on a busy machine).
    spec = h.store.create(function="rec", source=queue.uri, batch_size=10, window_s=2,
                          report_item_failures=True)
    handler = Recorder(partial=True, fail_once={3, 7})
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: h.store.stats(spec.uuid)["succeeded"] == 10, what="all 10")
    h.stop_all()
    assert sorted(handler.calls[0]) == list(range(10))
    assert sorted(handler.calls[1]) == [3, 7]
    assert len(handler.calls) == 2


def test_a_poison_message_goes_to_the_destination_without_blocking_the_queue(h, queue):
    dlq = f"{h.prefix}-dlq"
    queue(range(200))
    spec = h.store.create(function="rec", source=queue.uri, batch_size=10, max_retries=2,
                          report_item_failures=True, on_failure=f"redis+stream:///{dlq}")
    handler = Recorder(poison={42}, partial=True, sleep_s=0.01)
    runner = h.runner(spec, PythonInvoker(handler), retry_base_s=0.3)
    h.start(runner)
    wait_for(lambda: h.store.stats(spec.uuid)["failed"] == 1, what="the poison given up")
    wait_for(lambda: h.store.stats(spec.uuid)["succeeded"] == 199, what="the other 199")
    h.stop_all()
    assert sorted(set(handler.seen())) == list(range(200))
    assert handler.seen().count(42) == 3
    # Other records kept flowing while 42 waited for its retries.
    tries = [i for i, c in enumerate(handler.calls) if 42 in c]
    assert any(42 not in c for c in handler.calls[tries[0] + 1: tries[-1]])
    [record] = h.destination_records(dlq)
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["recordIds"] == ["m-42"]
    assert orjson.loads(base64.b64decode(record["records"][0]["data"])) == {"n": 42}


def test_a_failing_batch_without_partial_reports_is_bisected_down_to_the_poison(h, queue):
    dlq = f"{h.prefix}-dlq"
    queue(range(8))
    spec = h.store.create(function="rec", source=queue.uri, batch_size=8, bisect=True,
                          max_retries=0, on_failure=f"redis+stream:///{dlq}", window_s=1)
    handler = Recorder(poison={6})
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: h.store.stats(spec.uuid)["failed"] == 1, what="the poison isolated")
    wait_for(lambda: h.store.stats(spec.uuid)["succeeded"] == 7, what="the other 7")
    h.stop_all()
    assert [c for c in handler.calls if 6 in c][-1] == [6]
    [record] = h.destination_records(dlq)
    assert record["recordIds"] == ["m-6"]


def test_max_concurrency_caps_batches_in_flight(h, queue):
    queue(range(60))
    spec = h.store.create(function="rec", source=queue.uri, batch_size=5, max_concurrency=3)
    handler = Recorder(sleep_s=0.2)
    h.start(h.runner(spec, PythonInvoker(handler), concurrency=3))
    wait_for(lambda: h.store.stats(spec.uuid)["succeeded"] == 60, what="60 records")
    h.stop_all()
    assert handler.peak == 3
    assert sorted(handler.seen()) == list(range(60))


def test_a_whole_batch_failure_redelivers_the_whole_batch(h, queue):
    queue(range(5))
    spec = h.store.create(function="rec", source=queue.uri, batch_size=5, window_s=1)
    handler = Recorder(fail_once={2})
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: h.store.stats(spec.uuid)["succeeded"] == 5, what="5 records")
    h.stop_all()
    assert [sorted(c) for c in handler.calls] == [list(range(5)), list(range(5))]


def test_a_missing_queue_shows_as_the_mappings_last_result(h, amqp_url, unique):
    base = amqp_url.rstrip("/").rsplit("/", 1)[0]
    spec = h.store.create(function="rec", batch_size=5, source=f"{base}/%2F/wq-{unique}-absent")
    h.start(h.runner(spec, PythonInvoker(Recorder())))
    wait_for(lambda: h.store.stats(spec.uuid)["last_result"].startswith("PROBLEM"),
             what="the problem reported")
    h.stop_all()
    assert "wq-" in h.store.stats(spec.uuid)["last_result"]
