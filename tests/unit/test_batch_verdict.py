"""Reading a reply as Lambda does: what is done, what spends an attempt, what runs next."""

from __future__ import annotations

import pytest

from router.batching.failure import failure_record
from router.batching.invoker import InvokeReply
from router.batching.verdict import failed_identifiers, judge
from warren.source import SourceRecord

RECORDS = [SourceRecord(id=f"r{i}", data=b"{}", record={"i": i}, size=10, arrival=1e9 + i)
           for i in range(6)]


def ids(records):
    return [r.id for r in records]


def fail(*names):
    return InvokeReply(True, {"batchItemFailures": [{"itemIdentifier": n} for n in names]})


def test_success_commits_everything():
    v = judge(InvokeReply(True, None), RECORDS, ordered=True, report_item_failures=False,
              bisect=False)
    assert ids(v.succeeded) == ids(RECORDS) and not v.next and not v.failed


def test_a_throttle_retries_without_spending_an_attempt():
    v = judge(InvokeReply(False, throttled=True), RECORDS, ordered=True,
              report_item_failures=True, bisect=True)
    assert not v.reached and not v.counts_attempt and v.next == [RECORDS]


def test_a_function_error_spends_an_attempt_for_every_record():
    v = judge(InvokeReply(True, {}, "Unhandled"), RECORDS, ordered=False,
              report_item_failures=True, bisect=False)
    assert v.counts_attempt and ids(v.failed) == ids(RECORDS) and v.next == [RECORDS]


def test_bisect_splits_in_order_and_spends_nothing():
    v = judge(InvokeReply(True, {}, "Unhandled"), RECORDS, ordered=True,
              report_item_failures=False, bisect=True)
    assert not v.counts_attempt and not v.failed
    assert [ids(b) for b in v.next] == [["r0", "r1", "r2"], ["r3", "r4", "r5"]]
    single = judge(InvokeReply(True, {}, "Unhandled"), RECORDS[:1], ordered=True,
                   report_item_failures=False, bisect=True)
    assert single.counts_attempt and single.next == [RECORDS[:1]]


def test_stream_partial_failure_checkpoints_at_the_lowest_failed_record():
    v = judge(fail("r4", "r2"), RECORDS, ordered=True, report_item_failures=True, bisect=False)
    assert ids(v.succeeded) == ["r0", "r1"]
    assert ids(v.failed) == ["r2", "r4"]
    assert [ids(b) for b in v.next] == [["r2", "r3", "r4", "r5"]]


def test_queue_partial_failure_retries_only_the_named_records():
    v = judge(fail("r4", "r2"), RECORDS, ordered=False, report_item_failures=True, bisect=False)
    assert ids(v.succeeded) == ["r0", "r1", "r3", "r5"]
    assert [ids(b) for b in v.next] == [["r2", "r4"]]


def test_partial_responses_are_ignored_without_report_item_failures():
    v = judge(fail("r1"), RECORDS, ordered=False, report_item_failures=False, bisect=False)
    assert ids(v.succeeded) == ids(RECORDS)


@pytest.mark.parametrize("payload", [None, "", {}, {"batchItemFailures": None},
                                     {"batchItemFailures": []}, 42, "done"])
def test_complete_success_responses(payload):
    assert failed_identifiers(payload, {"r0"}) == set()


@pytest.mark.parametrize("payload", [
    {"batchItemFailures": [{"itemIdentifier": ""}]},
    {"batchItemFailures": [{"itemIdentifier": None}]},
    {"batchItemFailures": [{"itemidentifier": "r0"}]},
    {"batchItemFailures": [{"itemIdentifier": "nope"}]},
    {"batchItemFailures": ["r0"]},
    {"batchItemFailures": {"itemIdentifier": "r0"}},
])
def test_malformed_responses_are_complete_failures(payload):
    assert failed_identifiers(payload, {"r0"}) is None
    v = judge(InvokeReply(True, payload), RECORDS[:1], ordered=False, report_item_failures=True,
              bisect=False)
    assert v.counts_attempt and ids(v.failed) == ["r0"]


def test_failure_records_name_the_records_and_carry_queue_messages():
    stream = failure_record(kind="stream", source_uri="redis+stream:///s", function_arn="arn:f",
                            records=RECORDS[1:3], condition="RecordAgeExceeded", invoke_count=0,
                            reply=None)
    assert stream["requestContext"]["condition"] == "RecordAgeExceeded"
    assert stream["KinesisBatchInfo"]["startSequenceNumber"] == "r1"
    assert stream["KinesisBatchInfo"]["endSequenceNumber"] == "r2"
    assert stream["recordIds"] == ["r1", "r2"] and "records" not in stream
    queue = failure_record(kind="queue", source_uri="amqp://h/v/q", function_arn="arn:f",
                           records=RECORDS[:1], condition="RetryAttemptsExhausted",
                           invoke_count=3, reply=InvokeReply(True, {}, "Unhandled"))
    assert queue["records"] == [{"i": 0}]
    assert queue["responseContext"]["functionError"] == "Unhandled"
    assert queue["BatchInfo"]["batchSize"] == 1
