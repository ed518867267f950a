"""One broker behaviour, two brokers: the in-memory one and RabbitMQ keep the same contract."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from broker_adapters.amqp import Backbone
from broker_adapters.memory import MemoryServer
from warren.errors import BrokerUnavailable
from warren.keys import Keys
from warren.ports import Broker, Delivery
from warren.settings import AmqpSettings

DELAY_MS = 200


class Brokers:
    """Connections under one unique prefix, on the broker a test is parametrized with."""

    def __init__(self, connect: Callable[[str], Broker], keys: Keys) -> None:
        self._connect = connect
        self.keys = keys
        self.opened: list[Broker] = []
        self.extra_queues: list[str] = []

    def connect(self, name: str = "contract") -> Broker:
        broker = self._connect(name)
        self.opened.append(broker)
        return broker

    @property
    def queue(self) -> str:
        return self.keys.work_queue()


@pytest.fixture(params=["memory", "rabbitmq"])
def brokers(request: pytest.FixtureRequest, unique: str) -> Iterator[Brokers]:
    keys = Keys(f"t-broker-{unique}")
    if request.param == "memory":
        server = MemoryServer()
        yield Brokers(lambda name: server.connect(keys, name), keys)
        return
    amqp = AmqpSettings.from_url(request.getfixturevalue("amqp_url"))
    f = Brokers(lambda name: Backbone(amqp, keys, name=name), keys)
    yield f
    for broker in f.opened:
        broker.close()
    cleanup = Backbone(amqp, keys, name="contract-cleanup")
    for queue in [*keys.all_queues(), keys.sync_queue(), keys.delay_queue(DELAY_MS),
                  *f.extra_queues]:
        cleanup.delete_queue(queue)
    cleanup.close()


def pump(broker: Broker, until: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, "the broker did not deliver in time"
        broker.process(0.05)


def test_a_published_message_is_consumed_and_acked_once(brokers):
    # Given a declared brokers and a message with headers
    producer, consumer = brokers.connect("producer"), brokers.connect("consumer")
    producer.declare()
    producer.publish(brokers.queue, b"hello", headers={"h": "v", "n": 1}, correlation_id="c-1")
    assert producer.depth(brokers.queue) == 1

    # When a consumer takes it and acks it
    got: list[Delivery] = []
    consumer.consume(brokers.queue, got.append, prefetch=10)
    pump(consumer, lambda: len(got) == 1)
    [delivery] = got
    assert (delivery.body, delivery.headers, delivery.correlation_id, delivery.redelivered) == (
        b"hello", {"h": "v", "n": 1}, "c-1", False)
    consumer.ack(delivery.tag)
    consumer.close()

    # Then it is gone for good
    assert producer.depth(brokers.queue) == 0
    assert producer.get(brokers.queue) is None


def test_a_nacked_message_comes_again_marked_redelivered(brokers):
    broker = brokers.connect()
    broker.declare()
    broker.publish_many(brokers.queue, [b"one"])
    got: list[Delivery] = []
    broker.consume(brokers.queue, got.append, prefetch=1)
    pump(broker, lambda: len(got) == 1)

    # When it is nacked with requeue, it is delivered again, redelivered (a quorum queue puts
    # it back at the tail, a classic one at its place: only one message waits here)
    broker.nack(got[0].tag, requeue=True)
    pump(broker, lambda: len(got) == 2)
    assert (got[1].body, got[1].redelivered) == (b"one", True)

    # And nacked without requeue it is dropped; the next one follows
    broker.publish_many(brokers.queue, [b"two"])
    broker.nack(got[1].tag, requeue=False)
    pump(broker, lambda: len(got) == 3)
    assert (got[2].body, got[2].redelivered) == (b"two", False)
    broker.ack(got[2].tag)
    assert broker.depth(brokers.queue) == 0


def test_confirmed_publishes_hold_or_are_refused(brokers):
    broker = brokers.connect()
    broker.declare()
    missing = f"{brokers.keys.prefix}.missing"

    # A confirmed publish to no queue is refused, alone or many at once
    with pytest.raises(BrokerUnavailable):
        broker.publish(missing, b"x", confirm=True)
    with pytest.raises(BrokerUnavailable):
        broker.publish_many(missing, [b"x", b"y"])
    # Fire-and-forget is not
    broker.publish(missing, b"x", confirm=False)

    # And confirmed publishes that return are held by the broker, in order
    broker.publish_many(brokers.queue, [b"%d" % n for n in range(50)])
    broker.publish(brokers.queue, b"last")
    assert broker.depth(brokers.queue) == 51
    taken = [broker.get(brokers.queue) for _ in range(51)]
    assert [d.body for d in taken if d] == [*(b"%d" % n for n in range(50)), b"last"]
    assert broker.depth(missing) is None


def test_direct_reply_to_routes_the_reply_to_the_requester(brokers):
    # Given a requester listening for replies and a server consuming the queue
    requester, server = brokers.connect("requester"), brokers.connect("server")
    requester.declare()
    replies: list[Delivery] = []
    requester.consume_replies(replies.append)
    requests: list[Delivery] = []
    server.consume(brokers.queue, requests.append, prefetch=5)

    # When a request goes out and the server answers its reply_to
    requester.request(brokers.queue, b"ping", correlation_id="r-1", expiration_ms=10_000)
    pump(server, lambda: len(requests) == 1)
    [req] = requests
    assert req.body == b"ping" and req.correlation_id == "r-1" and req.reply_to
    server.publish(req.reply_to, b"pong", correlation_id=req.correlation_id, confirm=False)
    server.ack(req.tag)

    # Then the reply arrives on the requester's connection, with its correlation id
    pump(requester, lambda: len(replies) == 1)
    assert (replies[0].body, replies[0].correlation_id) == (b"pong", "r-1")


def test_a_delay_queue_hands_messages_back_to_the_async_queue(brokers):
    broker = brokers.connect()
    broker.declare()
    delay = broker.declare_delay(DELAY_MS)
    assert delay == brokers.keys.delay_queue(DELAY_MS)
    assert broker.declare_delay(DELAY_MS) == delay  # idempotent

    broker.publish_many(delay, [b"later-1", b"later-2"])

    deadline = time.monotonic() + 10
    while broker.depth(brokers.keys.async_queue) != 2:
        assert time.monotonic() < deadline, "the delay queue did not dead-letter back"
        broker.process(0.05)
    assert broker.depth(delay) == 0
    assert [broker.get(brokers.keys.async_queue).body for _ in range(2)] == [b"later-1", b"later-2"]


def test_an_expired_message_is_never_delivered(brokers):
    # Given a request that expires in 100 ms, then one that does not, with no consumer yet
    broker = brokers.connect()
    broker.declare()
    broker.publish(brokers.queue, b"stale", expiration_ms=100)
    broker.publish(brokers.queue, b"fresh")

    # When the first has expired (RabbitMQ counts from when it confirmed it; its queue depth
    # may still count an expired message until it reaches a consumer, so none is asserted)
    time.sleep(0.5)

    # Then a consumer gets only the other one
    got: list[Delivery] = []
    broker.consume(brokers.queue, got.append, prefetch=10)
    pump(broker, lambda: len(got) == 1)
    broker.process(0.2)
    assert [d.body for d in got] == [b"fresh"]


def test_a_closed_connection_gives_back_what_it_held_unacked(brokers):
    # Given a consumer holding two deliveries and acking one of them
    first, second = brokers.connect("first"), brokers.connect("second")
    first.declare()
    first.publish_many(brokers.queue, [b"a", b"b"])
    got: list[Delivery] = []
    first.consume(brokers.queue, got.append, prefetch=2)
    pump(first, lambda: len(got) == 2)
    first.ack(got[0].tag)

    # When its connection closes
    first.close()
    assert not first.is_open
    with pytest.raises(BrokerUnavailable):
        first.publish(brokers.queue, b"after close")

    # Then the unacked one goes to the next consumer, marked redelivered
    again: list[Delivery] = []
    second.consume(brokers.queue, again.append, prefetch=2)
    pump(second, lambda: len(again) == 1)
    assert (again[0].body, again[0].redelivered) == (b"b", True)
    second.ack(again[0].tag)


def test_a_cancelled_consumer_takes_no_more_but_settles_what_it_took(brokers):
    worker, other = brokers.connect("worker"), brokers.connect("other")
    worker.declare()
    worker.publish(brokers.queue, b"taken")
    got: list[Delivery] = []
    tag = worker.consume(brokers.queue, got.append, prefetch=1)
    pump(worker, lambda: len(got) == 1)

    # When it cancels, a new message is not delivered to it
    worker.cancel(tag)
    worker.publish(brokers.queue, b"next")
    worker.process(0.3)
    assert [d.body for d in got] == [b"taken"]

    # And the delivery it holds is still its own to ack
    worker.ack(got[0].tag)
    more: list[Delivery] = []
    other.consume(brokers.queue, more.append, prefetch=5)
    pump(other, lambda: len(more) == 1)
    assert (more[0].body, more[0].redelivered) == (b"next", False)


def test_prefetch_bounds_unacked_deliveries_and_ack_multiple_settles_earlier_tags(brokers):
    broker = brokers.connect()
    broker.declare()
    broker.publish_many(brokers.queue, [b"%d" % n for n in range(5)])
    got: list[Delivery] = []
    broker.consume(brokers.queue, got.append, prefetch=2)
    pump(broker, lambda: len(got) == 2)
    broker.process(0.3)
    assert len(got) == 2  # no more until one is settled

    broker.ack(got[1].tag, multiple=True)  # settles both
    pump(broker, lambda: len(got) == 4)
    broker.ack(got[3].tag, multiple=True)
    pump(broker, lambda: len(got) == 5)
    broker.ack(got[4].tag)
    broker.close()
    assert [d.body for d in got] == [b"%d" % n for n in range(5)]
    assert brokers.connect().depth(brokers.queue) == 0


def test_call_soon_runs_on_the_owning_thread_inside_process(brokers):
    broker = brokers.connect()
    ran_on: list[str] = []
    other = threading.Thread(
        target=lambda: broker.call_soon(lambda: ran_on.append(threading.current_thread().name))
    )
    other.start()
    other.join()
    pump(broker, lambda: bool(ran_on))
    assert ran_on == [threading.current_thread().name]
    broker.close()
    with pytest.raises(BrokerUnavailable):
        broker.call_soon(lambda: None)
