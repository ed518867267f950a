"""The MQTT source on a private Mosquitto: IoT rule events, acks after the batch, restarts."""

from __future__ import annotations

import threading
import time

import orjson
import paho.mqtt.client as mqtt
import pytest
from support.mappings import Harness, wait_for

from broker_adapters.sources import prepare_source, purge_source
from broker_adapters.sources.mqtt_session import client_id
from router.batching.invoker import PythonInvoker
from warren.errors import InvalidParameter, Unavailable
from warren.store.mappings import MappingStore


@pytest.fixture
def h(redis_url, amqp_url, unique):
    harness = Harness(redis_url, amqp_url, f"wm-{unique}")
    harness.store = MappingStore(harness.redis, harness.prefix, prepare=prepare_source,
                                 purge=purge_source)
    yield harness
    harness.stop_all()
    for spec in harness.store.list_mappings():
        harness.store.purge(spec.uuid)
    harness.cleanup()


@pytest.fixture
def publish(mqtt_server):
    clients = []

    def send(topic: str, payload: bytes) -> None:
        if not clients or not clients[-1].is_connected():
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            client.connect("127.0.0.1", mqtt_server.port)
            client.loop_start()
            clients.append(client)
        clients[-1].publish(topic, payload, qos=1).wait_for_publish(10)

    yield send
    for client in clients:
        client.disconnect()
        client.loop_stop()


class Events:
    def __init__(self, fail_times: int = 0, delay_s: float = 0.0):
        self.events: list = []
        self.fail_times = fail_times
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def __call__(self, event, context):
        time.sleep(self.delay_s)
        with self.lock:
            self.events.append(event)
            if self.fail_times:
                self.fail_times -= 1
                raise RuntimeError("not now")


def test_batch_size_1_delivers_each_payload_itself_with_its_topic_field(h, mqtt_server, publish,
                                                                      unique):
    uri = f"{mqtt_server.url}/dev-{unique}/+/temp?topic_field=source"
    spec = h.store.create(function="f", source=uri)
    assert spec.batch_size == 1
    # Published after `mapping create`, before any poller: the session keeps them.
    publish(f"dev-{unique}/a/temp", b'{"t": 21.5}')
    publish(f"dev-{unique}/b/temp", b"[1, 2]")
    publish(f"dev-{unique}/c/temp", b"\xff raw")
    publish(f"dev-{unique}/c/other", b'{"t": 0}')
    handler = Events()
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: len(handler.events) == 3, what="three events")
    h.stop_all()
    assert handler.events == [
        {"t": 21.5, "source": f"dev-{unique}/a/temp"},
        [1, 2],
        {"base64": "/yByYXc=", "topic": f"dev-{unique}/c/temp"},
    ]


def test_a_larger_batch_is_an_array_of_payloads_in_arrival_order(h, mqtt_server, publish, unique):
    spec = h.store.create(function="f", source=f"{mqtt_server.url}/b-{unique}/#", batch_size=50,
                          window_s=1)
    for n in range(20):
        publish(f"b-{unique}/x", orjson.dumps({"n": n}))
    handler = Events()
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: sum(len(e) for e in handler.events) == 20, what="20 payloads")
    h.stop_all()
    assert [p["n"] for e in handler.events for p in e] == list(range(20))


def test_a_message_is_acked_only_after_its_batch_is_done(h, mqtt_server, publish, unique):
    dlq = f"{h.prefix}-dlq"
    spec = h.store.create(function="f", source=f"{mqtt_server.url}/a-{unique}", max_retries=1,
                          on_failure=f"redis+stream:///{dlq}")
    publish(f"a-{unique}", b'{"n": 1}')
    failing = Events(fail_times=100)
    h.start(h.runner(spec, PythonInvoker(failing)))
    wait_for(lambda: len(failing.events) >= 1, what="the first attempt")
    h.stop_all()  # stopped between attempts: never acked, so the broker keeps it
    handler = Events()
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: handler.events == [{"n": 1}], what="the redelivery")
    h.stop_all()
    # Given up after its retries: to the destination with the payload, then acked.
    spec2 = h.store.create(function="f", source=f"{mqtt_server.url}/g-{unique}", max_retries=1,
                           on_failure=f"redis+stream:///{dlq}")
    publish(f"g-{unique}", b'{"n": 2}')
    publish(f"g-{unique}", b'{"n": 3}')
    failing = Events(fail_times=2)
    h.start(h.runner(spec2, PythonInvoker(failing)))
    wait_for(lambda: {"n": 3} in failing.events, what="the next message")
    h.stop_all()
    assert failing.events == [{"n": 2}, {"n": 2}, {"n": 3}]
    [record] = h.destination_records(dlq)
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["records"] == [{"n": 2}]
    again = Events()
    h.start(h.runner(spec2, PythonInvoker(again)))
    publish(f"g-{unique}", b'{"n": 4}')
    wait_for(lambda: again.events == [{"n": 4}], what="only the new message")
    h.stop_all()


def test_a_mosquitto_restart_loses_no_message(h, mqtt_server, publish, unique):
    spec = h.store.create(function="f", source=f"{mqtt_server.url}/r-{unique}/#", batch_size=10)
    for n in range(50):
        publish(f"r-{unique}/x", orjson.dumps({"n": n}))
    handler = Events(delay_s=0.1)
    h.start(h.runner(spec, PythonInvoker(handler)))
    wait_for(lambda: len(handler.events) >= 1, what="the first batch")
    mqtt_server.restart()
    assert len(handler.events) < 5, "the restart came too late to be mid-stream"
    for n in range(50, 100):
        publish(f"r-{unique}/x", orjson.dumps({"n": n}))
    wait_for(lambda: {p["n"] for e in handler.events for p in e} >= set(range(100)),
             timeout=60, what="all 100 messages")
    h.stop_all()
    firsts = list(dict.fromkeys(p["n"] for e in handler.events for p in e))
    assert firsts == list(range(100))


def test_deleting_the_mapping_ends_its_session(h, mqtt_server, unique):
    spec = h.store.create(function="f", source=f"{mqtt_server.url}/d-{unique}")
    h.store.delete(spec.uuid)
    present = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id(spec.uuid),
                         protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, u, flags, rc, p: present.append(flags.session_present)
    client.connect("127.0.0.1", mqtt_server.port, clean_start=False)
    client.loop_start()
    try:
        wait_for(lambda: present, what="the connection")
    finally:
        client.disconnect()
        client.loop_stop()
    assert present == [False]


@pytest.mark.parametrize("path", [
    "", "/", "/a/#/b", "/a/b#", "/a+/b", "/t?qos=3", "/t?qso=1", "/t?topic_field=",
])
def test_bad_mqtt_uris_are_refused_at_mapping_create(h, mqtt_server, path):
    with pytest.raises(InvalidParameter, match="mqtt://"):
        h.store.create(function="f", source=f"{mqtt_server.url}{path}")
    assert h.store.list_mappings() == []


def test_an_unreachable_broker_is_refused_at_mapping_create(h):
    with pytest.raises(Unavailable):
        h.store.create(function="f", source="mqtt://127.0.0.1:1/t")
    assert h.store.list_mappings() == []
