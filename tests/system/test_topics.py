"""Topics through a real router (its relay) and workers: fan-out, filter policies, failures."""

from __future__ import annotations

import time

import orjson
import pytest
from aws_lambda_powertools.utilities.data_classes import SNSEvent
from support.fleet import Fleet

from warren.errors import InvalidParameter, NotFound

pytestmark = pytest.mark.slow


@pytest.fixture
def topics(fleet: Fleet):
    yield fleet.client
    for name in fleet.client.list_topics():
        fleet.client.delete_topic(name)


def _events(fleet: Fleet, stream: str) -> list:
    return [r["requestPayload"] for r in fleet.stream_records(stream)]


def test_one_publish_reaches_every_matching_subscriber_once_in_sns_shape(fleet, topics):
    # Given a topic with two subscribers, one of them filtering on an attribute
    every, orders = f"{fleet.prefix}-every", f"{fleet.prefix}-orders"
    fleet.function("every", on_success=f"redis+stream:///{every}")
    fleet.function("orders", on_success=f"redis+stream:///{orders}")
    fleet.worker(slots=2)
    fleet.router()
    topics.create_topic("shop")
    sub_all = topics.subscribe("shop", "every")
    sub_orders = topics.subscribe("shop", "orders", filter_policy=orjson.dumps(
        {"kind": ["order"], "total": [{"numeric": [">", 10]}]}).decode())
    # When three messages are published
    ids = [
        topics.publish("shop", '{"id": 1}', subject="new order",
                       attributes={"kind": "order", "total": 25}),
        topics.publish("shop", "hello", attributes={"kind": "greeting"}),
        topics.publish("shop", '{"id": 2}', attributes={"kind": "order", "total": 5}),
    ]
    # Then "every" gets all three once each, "orders" only the big order
    fleet.wait_for(lambda: fleet.redis.xlen(every) >= 3 and fleet.redis.xlen(orders) >= 1,
                   timeout=60, what="the deliveries")
    time.sleep(1.0)  # would a duplicate or a filtered message follow?
    seen = _events(fleet, every)
    assert sorted(e["Records"][0]["Sns"]["MessageId"] for e in seen) == sorted(ids)
    [order] = _events(fleet, orders)
    assert len(order["Records"]) == 1
    record = SNSEvent(order).record
    assert record.event_source == "aws:sns"
    assert record.event_subscription_arn == sub_orders.arn
    assert record.sns.message_id == ids[0]
    assert record.sns.message == '{"id": 1}'
    assert record.sns.subject == "new order"
    assert record.sns.topic_arn.endswith(":shop")
    assert record.sns.get_type == "Notification"
    assert record.sns.message_attributes["total"].get_type == "Number"
    assert record.sns.message_attributes["total"].value == "25"
    assert record.sns.timestamp.endswith("Z")
    assert sub_all.arn != sub_orders.arn


def test_a_failing_subscriber_is_retried_then_recorded_without_holding_up_the_others(
        fleet, topics):
    ok, failed = f"{fleet.prefix}-ok", f"{fleet.prefix}-failed"
    fleet.function("good", on_success=f"redis+stream:///{ok}")
    fleet.function("bad", handler="app.fail", max_retries=1,
                   on_failure=f"redis+stream:///{failed}")
    fleet.worker(slots=2)
    fleet.router()
    topics.create_topic("alerts")
    topics.subscribe("alerts", "bad")
    topics.subscribe("alerts", "good")
    ids = [topics.publish("alerts", f"alert {n}") for n in range(5)]
    fleet.wait_for(lambda: fleet.redis.xlen(ok) >= 5, timeout=60, what="the good deliveries")
    fleet.wait_for(lambda: fleet.redis.xlen(failed) >= 5, timeout=60, what="the failure records")
    records = fleet.stream_records(failed)
    assert sorted(r["requestPayload"]["Records"][0]["Sns"]["MessageId"] for r in records) == (
        sorted(ids))
    assert {r["requestContext"]["condition"] for r in records} == {"RetriesExhausted"}
    assert {r["requestContext"]["approximateInvokeCount"] for r in records} == {2}


def test_messages_wait_in_their_subscription_until_a_router_relays_them(fleet, topics):
    out = f"{fleet.prefix}-out"
    fleet.function("later", on_success=f"redis+stream:///{out}")
    topics.create_topic("queued")
    topics.subscribe("queued", "later", raw=True)
    topics.publish("queued", '{"n": 1}')
    topics.publish("queued", "plain text")
    fleet.worker(slots=1)
    fleet.router()
    fleet.wait_for(lambda: fleet.redis.xlen(out) >= 2, timeout=60, what="the deliveries")
    # A raw subscription gets the message itself (parsed when it is JSON).
    assert sorted(map(str, _events(fleet, out))) == sorted(["{'n': 1}", "plain text"])


def test_the_cli_creates_subscribes_publishes_lists_and_deletes(fleet, topics, tmp_path):
    out = f"{fleet.prefix}-cli"
    fleet.function("clif", on_success=f"redis+stream:///{out}")
    fleet.worker(slots=1)
    fleet.router()
    assert fleet.cli("topic", "create", "news").returncode == 0
    made = fleet.cli("topic", "subscribe", "news", "--function", "clif", "--filter-policy",
                     '{"lang": [{"prefix": "en"}]}', "-o", "json")
    assert made.returncode == 0, made.stderr
    sid = orjson.loads(made.stdout)["id"]
    body = tmp_path / "msg.txt"
    body.write_text("from a file")
    sent = fleet.cli("topic", "publish", "news", "--message", f"@{body}", "--subject", "s",
                     "--attribute", "lang=en-GB", "--attribute", "n:Number=3", "-o", "json")
    assert sent.returncode == 0, sent.stderr
    message_id = orjson.loads(sent.stdout)["MessageId"]
    assert fleet.cli("topic", "publish", "news", "--message", "x",
                     "--attribute", "lang=fr").returncode == 0
    fleet.wait_for(lambda: fleet.redis.xlen(out) >= 1, timeout=60, what="the delivery")
    time.sleep(1.0)
    [event] = _events(fleet, out)
    sns = event["Records"][0]["Sns"]
    assert (sns["MessageId"], sns["Message"], sns["Subject"]) == (message_id, "from a file", "s")
    assert sns["MessageAttributes"]["n"] == {"Type": "Number", "Value": "3"}
    listed = orjson.loads(fleet.cli("topic", "list", "-o", "json").stdout)
    assert [t["name"] for t in listed] == ["news"] and listed[0]["subscriptions"] == 1
    assert fleet.cli("topic", "unsubscribe", "news", sid).returncode == 0
    assert orjson.loads(fleet.cli("topic", "list", "news", "-o", "json").stdout) == []
    assert fleet.cli("topic", "delete", "news").returncode == 0
    gone = fleet.cli("topic", "publish", "news", "--message", "x")
    assert gone.returncode != 0 and b"not found" in gone.stderr


def test_bad_topic_requests_are_refused(fleet, topics):
    fleet.function("f")
    with pytest.raises(InvalidParameter):
        topics.create_topic("bad name")
    with pytest.raises(NotFound):
        topics.subscribe("absent", "f")
    topics.create_topic("t")
    with pytest.raises(NotFound):
        topics.subscribe("t", "no-such-function")
    with pytest.raises(InvalidParameter, match="filter"):
        topics.subscribe("t", "f", filter_policy='{"kind": "order"}')
    with pytest.raises(InvalidParameter, match="Number"):
        topics.publish("t", "x", attributes={"n": {"Type": "Number", "Value": "abc"}})
    with pytest.raises(NotFound):
        topics.publish("absent", "x")
    with pytest.raises(InvalidParameter):
        topics.publish("t", "")
