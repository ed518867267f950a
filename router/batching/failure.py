"""The record an on-failure destination receives when a mapping gives up on some records.

Lambda's shape for streams (requestContext / responseContext / KinesisBatchInfo, or
DDBStreamBatchInfo for a PostgreSQL table), with Warren's addition `recordIds` (the
itemIdentifiers given up on) for every source kind. For queues, buckets, tables and MQTT the
records themselves travel too (`records`): once acked or checkpointed nothing else keeps them,
so metadata alone would lose them. Redis streams keep their data, so, as on Lambda, only
metadata is sent for them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from router.batching.invoker import InvokeReply
from warren.aws import (
    STREAM_RECORD_AGE_EXCEEDED,
    STREAM_RECORD_TOO_LARGE,
    STREAM_RETRIES_EXHAUSTED,
    iso_time,
)
from warren.source import SourceRecord

RETRIES_EXHAUSTED = STREAM_RETRIES_EXHAUSTED
RECORD_AGE_EXCEEDED = STREAM_RECORD_AGE_EXCEEDED
RECORD_TOO_LARGE = STREAM_RECORD_TOO_LARGE


def _source_arn(record: dict[str, Any], fallback: str) -> str:
    for key in ("eventSourceARN", "eventSourceArn"):
        if isinstance(record.get(key), str):
            return str(record[key])
    return fallback


def failure_record(
    *,
    kind: str,
    source_uri: str,
    function_arn: str,
    records: Sequence[SourceRecord],
    condition: str,
    invoke_count: int,
    reply: InvokeReply | None,
) -> dict[str, Any]:
    """Build the JSON-able destination record for `records` given up on with `condition`."""
    first, last = records[0], records[-1]
    body: dict[str, Any] = {
        "requestContext": {
            "requestId": reply.request_id if reply and reply.request_id else str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": {
            "statusCode": 200 if reply is not None and reply.ok else 0,
            "executedVersion": reply.executed_version if reply else "$LATEST",
            "functionError": reply.function_error if reply and reply.function_error else "",
        },
        "version": "1.0",
        "timestamp": iso_time(),
        "recordIds": [r.id for r in records],
    }
    if kind in ("stream", "table"):
        info = "KinesisBatchInfo" if kind == "stream" else "DDBStreamBatchInfo"
        body[info] = {
            "shardId": "shardId-000000000000",
            "startSequenceNumber": first.id,
            "endSequenceNumber": last.id,
            "approximateArrivalOfFirstRecord": iso_time(first.arrival),
            "approximateArrivalOfLastRecord": iso_time(last.arrival),
            "batchSize": len(records),
            "streamArn": _source_arn(first.record, source_uri),
        }
        if kind == "table":  # the slot keeps no change once it is past it: send the records
            body["records"] = [r.record for r in records]
    else:
        body["BatchInfo"] = {
            "source": source_uri,
            "batchSize": len(records),
            "approximateArrivalOfFirstRecord": iso_time(first.arrival),
            "approximateArrivalOfLastRecord": iso_time(last.arrival),
        }
        body["records"] = [r.record for r in records]
    return body
