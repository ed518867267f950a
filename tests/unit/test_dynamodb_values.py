"""PostgreSQL text values as DynamoDB attribute values, and pgoutput's LSN and sequence forms."""

from __future__ import annotations

import pytest

from broker_adapters.sources.dynamodb import attribute, json_attribute, parse_array, sequence_number
from broker_adapters.sources.pgoutput import lsn_text, parse_lsn


@pytest.mark.parametrize("oid, text, expected", [
    (23, "42", {"N": "42"}),
    (1700, "-3.250", {"N": "-3.250"}),
    (701, "NaN", {"S": "NaN"}),
    (701, "-Infinity", {"S": "-Infinity"}),
    (16, "t", {"BOOL": True}),
    (16, "f", {"BOOL": False}),
    (25, "hello", {"S": "hello"}),
    (1184, "2026-12-07 03:00:00+00", {"S": "2026-12-07 03:00:00+00"}),
    (17, "\\x00ff", {"B": "AP8="}),
    (3802, '{"a": {"b": [true, 1.5, "x"]}}',
     {"M": {"a": {"M": {"b": {"L": [{"BOOL": True}, {"N": "1.5"}, {"S": "x"}]}}}}}),
    (114, "[]", {"L": []}),
    (1007, "{1,NULL,3}", {"L": [{"N": "1"}, {"NULL": True}, {"N": "3"}]}),
    (1000, "{t,f}", {"L": [{"BOOL": True}, {"BOOL": False}]}),
    (1009, '{"a,b","q\\"t",NULL,"NULL",plain}',
     {"L": [{"S": "a,b"}, {"S": 'q"t'}, {"NULL": True}, {"S": "NULL"}, {"S": "plain"}]}),
    (1007, "{{1,2},{3,4}}", {"L": [{"L": [{"N": "1"}, {"N": "2"}]},
                                   {"L": [{"N": "3"}, {"N": "4"}]}]}),
    (1007, "{}", {"L": []}),
])
def test_a_column_becomes_the_attribute_value_dynamodb_would_hold(oid, text, expected):
    assert attribute(oid, text) == expected


def test_array_literals_with_explicit_bounds_and_json_scalars():
    assert parse_array("[0:1]={7,8}") == ["7", "8"]
    assert json_attribute(None) == {"NULL": True}
    assert json_attribute(10**20) == {"N": "100000000000000000000"}


def test_sequence_numbers_sort_as_text_in_commit_order_and_lsns_round_trip():
    ordered = [sequence_number(99, 5), sequence_number(100, 0), sequence_number(100, 12),
               sequence_number(2**40, 0)]
    assert ordered == sorted(ordered) == sorted(ordered, key=int)
    assert len({len(s) for s in ordered}) == 1
    for lsn in (0, 0x16B374D848, 2**63 + 5):
        assert parse_lsn(lsn_text(lsn)) == lsn
    assert lsn_text(0x16B374D848) == "16/B374D848"


def test_a_sequence_number_is_the_commit_lsn_times_ten_to_the_eighth_plus_the_index():
    assert int(sequence_number(123456789, 42)) == 123456789 * 10**8 + 42
