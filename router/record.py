"""Invocation records in the shape Lambda sends to async destinations (on-success / on-failure)."""

from __future__ import annotations

from typing import Any

from warren.aws import ASYNC_RETRIES_EXHAUSTED, iso_time
from warren.codec import loads_json
from warren.errors import DecodeError
from warren.invocation import Invocation

SUCCESS = "Success"
RETRIES_EXHAUSTED = ASYNC_RETRIES_EXHAUSTED
EVENT_AGE_EXCEEDED = "EventAgeExceeded"


def _json_or_text(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return loads_json(raw)
    except DecodeError:
        return raw.decode("utf-8", "replace")


def invocation_record(
    invocation: Invocation,
    condition: str,
    *,
    invoke_count: int,
    function_error: str | None = None,
    response: bytes = b"",
) -> dict[str, Any]:
    """Lambda's destination record: version, timestamp, requestContext, payloads, response."""
    spec = invocation.spec
    response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": spec.version}
    if function_error:
        response_context["functionError"] = function_error
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": iso_time(),
        "requestContext": {
            "requestId": invocation.request_id,
            "functionArn": spec.qualified_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": _json_or_text(invocation.payload),
        "responseContext": response_context,
        "responsePayload": _json_or_text(response),
    }
    if invoke_count == 0:
        # Never run (throttled to the end, or reserved concurrency 0): no response to report.
        record["responseContext"] = {"statusCode": 429, "executedVersion": spec.version}
        record.pop("responsePayload")
    return record
