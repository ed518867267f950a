"""SNS filter policies on message attributes, attribute parsing, and the SNS event shape."""

from __future__ import annotations

import orjson
import pytest
from aws_lambda_powertools.utilities.data_classes import SNSEvent

from warren.errors import InvalidParameter
from warren.topic import Subscription, TopicMessage, parse_attributes, sns_event


def _accepts(policy: dict, attributes: dict) -> bool:
    sub = Subscription.new("t", "f", orjson.dumps(policy).decode())
    return sub.accepts(parse_attributes(attributes))


@pytest.mark.parametrize("policy, attributes, expected", [
    ({"color": ["red", "blue"]}, {"color": "red"}, True),
    ({"color": ["red"]}, {"color": "green"}, False),
    ({"color": ["red"]}, {}, False),
    ({"color": [{"prefix": "gr"}]}, {"color": "green"}, True),
    ({"color": [{"suffix": "en"}]}, {"color": "green"}, True),
    ({"color": [{"anything-but": ["red"]}]}, {"color": "green"}, True),
    ({"color": [{"anything-but": ["red"]}]}, {"color": "red"}, False),
    ({"color": [{"equals-ignore-case": "RED"}]}, {"color": "red"}, True),
    ({"color": [{"exists": False}]}, {}, True),
    ({"color": [{"exists": True}]}, {"color": "x"}, True),
    ({"price": [{"numeric": [">=", 10, "<", 20]}]}, {"price": 15}, True),
    ({"price": [{"numeric": [">=", 10, "<", 20]}]}, {"price": 20}, False),
    ({"price": [5]}, {"price": {"Type": "Number", "Value": "5.0"}}, True),
    ({"price": [{"numeric": [">", 0]}]}, {"price": "15"}, False),  # a String is not a Number
    ({"sizes": ["M"]}, {"sizes": ["S", "M"]}, True),                # String.Array: any element
    ({"sizes": ["L"]}, {"sizes": ["S", "M"]}, False),
    ({"color": ["red"], "size": ["M"]}, {"color": "red", "size": "L"}, False),  # AND of keys
])
def test_a_filter_policy_matches_as_sns_does(policy, attributes, expected):
    assert _accepts(policy, attributes) is expected


def test_bad_policies_and_attributes_are_refused():
    for bad in ('{"kind": "order"}', "[1]", "{", '{"n": [{"numeric": ["~", 1]}]}'):
        with pytest.raises(InvalidParameter):
            Subscription.new("t", "f", bad)
    for bad in (["novalue"], ["=x"], ["n:Number=abc"], ["a:String.Array=x"], ["a:Blob=1"]):
        with pytest.raises(InvalidParameter):
            parse_attributes(bad)
    assert parse_attributes(["a=1=2", "n:Number=2.5", 'l:String.Array=["x"]']) == {
        "a": {"Type": "String", "Value": "1=2"},
        "n": {"Type": "Number", "Value": "2.5"},
        "l": {"Type": "String.Array", "Value": '["x"]'},
    }


def test_the_event_reads_as_powertools_sns_event_and_raw_gives_the_message():
    sub = Subscription.new("orders", "f:live")
    message = TopicMessage("m-1", "orders", '{"a": 1}', None, parse_attributes({"k": "v"}))
    event = SNSEvent(sns_event(sub, message))
    assert event.record.sns.message_id == "m-1"
    assert event.record.sns.subject is None
    assert event.record.sns.message_attributes["k"].value == "v"
    assert event.record.event_subscription_arn.endswith(f":orders:{sub.id}")
    assert sub.qualifier == "live" and sub.function_name == "f"
    raw = Subscription.new("orders", "f", raw=True)
    assert sns_event(raw, message) == {"a": 1}
    assert sns_event(raw, TopicMessage("m-2", "orders", "text")) == "text"
