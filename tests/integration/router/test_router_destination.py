"""Destinations against the real broker and Redis: durable, JSON, Lambda's record shape."""

from __future__ import annotations

import orjson
import pytest
import redis

from broker_adapters.amqp import Backbone
from router.destination import open_destination
from router.record import invocation_record
from warren.errors import InvalidParameter
from warren.function import AsyncConfig, FunctionSpec
from warren.invocation import EVENT, Invocation
from warren.keys import Keys
from warren.settings import Settings


@pytest.fixture
def settings(amqp_url: str, redis_url: str, unique: str) -> Settings:
    return Settings.from_environ(
        {"WARREN_AMQP_URL": amqp_url, "WARREN_REDIS_URL": redis_url, "WARREN_PREFIX": f"d{unique}"}
    )


def spec() -> FunctionSpec:
    return FunctionSpec(
        "fn", "app.h", "python3.11", 128, 3, {}, "", "0" * 64, 1, "2", AsyncConfig(), ""
    )


def test_stream_destination_appends_a_json_record(settings: Settings, unique: str) -> None:
    stream = f"d{unique}-stream"
    dest = open_destination(f"redis+stream:///{stream}", settings)
    inv = Invocation("rid-1", spec(), b'{"a": 1}', EVENT, attempt=3)
    dest.send(
        invocation_record(
            inv,
            "RetriesExhausted",
            invoke_count=3,
            function_error="Unhandled",
            response=b'{"errorType": "E"}',
        )
    )
    dest.close()
    client = redis.Redis.from_url(settings.redis.url)
    try:
        ((_id, fields),) = client.xrange(stream)
        record = orjson.loads(fields[b"record"])
    finally:
        client.delete(stream)
        client.close()
    assert record["requestContext"] == {
        "requestId": "rid-1",
        "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:fn:2",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    }
    assert record["requestPayload"] == {"a": 1}
    assert record["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "2",
        "functionError": "Unhandled",
    }
    assert record["responsePayload"] == {"errorType": "E"}


def test_queue_destination_is_a_durable_queue(settings: Settings, unique: str) -> None:
    queue = f"d{unique}-queue"
    dest = open_destination(f"amqp:///{queue}", settings)
    dest.send({"hello": "world"})
    dest.close()
    backbone = Backbone(settings.amqp, Keys(settings.prefix))
    try:
        delivery = backbone.get(queue)
        assert delivery is not None and orjson.loads(delivery.body) == {"hello": "world"}
    finally:
        backbone.delete_queue(queue)
        backbone.close()


@pytest.mark.parametrize("uri", ["sqs:///q", "amqp://host/q", "redis+stream:///", "nonsense"])
def test_bad_destination_uri_says_what_a_good_one_is(settings: Settings, uri: str) -> None:
    with pytest.raises(InvalidParameter, match="amqp:///QUEUE or redis\\+stream:///STREAM"):
        open_destination(uri, settings)
