"""Filter criteria: each operator of Lambda's pattern syntax, and what records present to it."""

from __future__ import annotations

import orjson
import pytest

from warren.errors import InvalidParameter
from warren.filter import FilterCriteria, parse_pattern


def passes(pattern: dict, data: object, kind: str = "stream") -> bool:
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    return FilterCriteria([orjson.dumps(pattern).decode()]).accepts(kind, raw, {})


def test_exact_string_number_and_boolean_match_only_the_same_json_value():
    assert passes({"data": {"kind": ["order"]}}, {"kind": "order"})
    assert not passes({"data": {"kind": ["order"]}}, {"kind": "refund"})
    assert passes({"data": {"n": [300]}}, {"n": 300})
    assert not passes({"data": {"n": [300]}}, {"n": 300.0})  # compared as their JSON text
    assert not passes({"data": {"n": ["300"]}}, {"n": 300})
    assert passes({"data": {"ok": [True]}}, {"ok": True})
    assert not passes({"data": {"ok": [True]}}, {"ok": 1})


def test_values_in_a_list_are_ored_and_keys_are_anded():
    pattern = {"data": {"kind": ["order", "refund"], "region": ["eu"]}}
    assert passes(pattern, {"kind": "refund", "region": "eu"})
    assert not passes(pattern, {"kind": "refund", "region": "us"})
    assert not passes(pattern, {"kind": "refund"})


def test_several_filters_are_ored():
    criteria = FilterCriteria(['{"data": {"a": [1]}}', '{"data": {"b": [2]}}'])
    assert criteria.accepts("stream", b'{"b": 2}', {})
    assert criteria.accepts("stream", b'{"a": 1}', {})
    assert not criteria.accepts("stream", b'{"a": 2, "b": 1}', {})


def test_null_matches_an_explicit_null_but_not_a_missing_key():
    assert passes({"data": {"x": [None]}}, {"x": None})
    assert not passes({"data": {"x": [None]}}, {})
    assert not passes({"data": {"x": [None]}}, {"x": ""})


def test_empty_string_matches_only_the_empty_string():
    assert passes({"data": {"x": [""]}}, {"x": ""})
    assert not passes({"data": {"x": [""]}}, {"x": None})
    assert not passes({"data": {"x": [""]}}, {})


def test_prefix_and_suffix_apply_to_strings_only():
    assert passes({"data": {"r": [{"prefix": "us-"}]}}, {"r": "us-east-1"})
    assert not passes({"data": {"r": [{"prefix": "us-"}]}}, {"r": "eu-west-1"})
    assert not passes({"data": {"r": [{"prefix": "1"}]}}, {"r": 12})
    assert passes({"data": {"f": [{"suffix": ".png"}]}}, {"f": "a/b.png"})
    assert not passes({"data": {"f": [{"suffix": ".png"}]}}, {"f": "a/b.jpg"})


def test_equals_ignore_case():
    assert passes({"data": {"s": [{"equals-ignore-case": "ALICE"}]}}, {"s": "alice"})
    assert not passes({"data": {"s": [{"equals-ignore-case": "ALICE"}]}}, {"s": "bob"})


def test_anything_but_values_and_prefix_and_missing_key():
    pattern = {"data": {"state": [{"anything-but": ["done", "failed"]}]}}
    assert passes(pattern, {"state": "running"})
    assert not passes(pattern, {"state": "done"})
    assert not passes(pattern, {})  # anything-but needs the key to exist
    assert passes({"data": {"n": [{"anything-but": 0}]}}, {"n": 1})
    assert not passes({"data": {"n": [{"anything-but": 0}]}}, {"n": 0})
    by_prefix = {"data": {"k": [{"anything-but": {"prefix": "tmp/"}}]}}
    assert passes(by_prefix, {"k": "img/a"})
    assert not passes(by_prefix, {"k": "tmp/a"})


def test_numeric_ranges():
    pattern = {"data": {"price": [{"numeric": [">", 10, "<=", 20]}]}}
    assert passes(pattern, {"price": 15})
    assert passes(pattern, {"price": 20})
    assert not passes(pattern, {"price": 10})
    assert not passes(pattern, {"price": 20.5})
    assert not passes(pattern, {"price": "15"})
    assert passes({"data": {"n": [{"numeric": ["=", 3]}]}}, {"n": 3.0})
    assert passes({"data": {"n": [{"numeric": [">=", 0]}]}}, {"n": 0})
    assert not passes({"data": {"n": [{"numeric": ["<", 0]}]}}, {"n": 0})


def test_exists_true_and_false():
    assert passes({"data": {"x": [{"exists": True}]}}, {"x": 0})
    assert not passes({"data": {"x": [{"exists": True}]}}, {"y": 0})
    assert passes({"data": {"x": [{"exists": False}]}}, {"y": 0})
    assert not passes({"data": {"x": [{"exists": False}]}}, {"x": None})
    assert passes({"data": {"a": {"b": [{"exists": False}]}}}, {"c": 1})


def test_nested_keys_and_arrays_in_the_record():
    pattern = {"data": {"order": {"tags": ["urgent"]}}}
    assert passes(pattern, {"order": {"tags": ["cheap", "urgent"]}})
    assert not passes(pattern, {"order": {"tags": ["cheap"]}})
    assert passes({"data": {"items": {"sku": ["b"]}}}, {"items": [{"sku": "a"}, {"sku": "b"}]})


def test_non_json_data_matches_only_patterns_that_do_not_look_inside_it():
    assert passes({"data": [{"prefix": "hello"}]}, b"hello world")
    assert passes({"data": [{"exists": True}]}, b"\xff\xfe not json")
    assert not passes({"data": {"kind": ["order"]}}, b"kind=order")
    assert not passes({"data": {"kind": [{"exists": False}]}}, b"plain")


def test_queue_records_can_be_filtered_on_data_or_body():
    assert passes({"body": {"a": [1]}}, {"a": 1}, kind="queue")
    assert passes({"data": {"a": [1]}}, {"a": 1}, kind="queue")


def test_s3_records_are_matched_as_the_record_itself():
    record = {"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "img/a.png", "size": 5}}}
    criteria = FilterCriteria(['{"s3": {"object": {"key": [{"suffix": ".png"}]}}}'])
    assert criteria.accepts("s3", orjson.dumps(record), record)
    record["s3"]["object"]["key"] = "img/a.jpg"
    assert not criteria.accepts("s3", orjson.dumps(record), record)


def test_no_filters_accept_everything():
    assert FilterCriteria([]).accepts("stream", b"anything", {})
    assert not FilterCriteria([])


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "[1, 2]",
        '{"data": "order"}',
        '{"data": {"kind": []}}',
        '{"data": {"kind": [{"regex": "x"}]}}',
        '{"data": {"n": [{"numeric": [">", "a"]}]}}',
        '{"data": {"n": [{"numeric": ["~", 1]}]}}',
        '{"data": {"n": [{"numeric": [">"]}]}}',
        '{"data": {"s": [{"prefix": 1}]}}',
        '{"data": {"s": [{"exists": "yes"}]}}',
        '{"data": {"s": [{"prefix": "a", "suffix": "b"}]}}',
        '{"data": {"s": [{"anything-but": {"wildcard": "a*"}}]}}',
        '{"data": {"s": [[1]]}}',
        "{}",
        '{"data": {"x": ["' + "a" * 4100 + '"]}}',
    ],
)
def test_malformed_patterns_are_rejected_with_a_reason(bad):
    with pytest.raises(InvalidParameter, match="invalid filter pattern"):
        parse_pattern(bad)


def test_more_than_five_filters_are_rejected():
    with pytest.raises(InvalidParameter, match="at most 5"):
        FilterCriteria(['{"data": {"a": [1]}}'] * 6)
