"""Lambda's own names in one place: ARNs, timestamps, region, account, conditions, fault codes."""

from __future__ import annotations

import os
from datetime import datetime, timezone

REGION = "us-east-1"
ACCOUNT_ID = "000000000000"

# Why an async invocation or a mapping's records went to an on-failure destination. Lambda uses
# two spellings for "out of retries": the async record's and the stream/queue record's.
ASYNC_RETRIES_EXHAUSTED = "RetriesExhausted"
ASYNC_EVENT_AGE_EXCEEDED = "EventAgeExceeded"
STREAM_RETRIES_EXHAUSTED = "RetryAttemptsExhausted"
STREAM_RECORD_AGE_EXCEEDED = "RecordAgeExceeded"
STREAM_RECORD_TOO_LARGE = "RecordTooLarge"

# errorType values the platform itself reports (a handler's own exception keeps its class name).
SANDBOX_TIMEDOUT = "Sandbox.Timedout"
RUNTIME_OUT_OF_MEMORY = "Runtime.OutOfMemory"
RUNTIME_EXIT_ERROR = "Runtime.ExitError"
RUNTIME_IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
RUNTIME_HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
RUNTIME_MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
RUNTIME_BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
RUNTIME_USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
RUNTIME_UNMARSHAL_ERROR = "Runtime.UnmarshalError"
RUNTIME_MARSHAL_ERROR = "Runtime.MarshalError"
RUNTIME_INIT_ERROR = "Runtime.InitError"
FAULT_CODES = frozenset(
    {
        SANDBOX_TIMEDOUT, RUNTIME_OUT_OF_MEMORY, RUNTIME_EXIT_ERROR, RUNTIME_IMPORT_MODULE_ERROR,
        RUNTIME_HANDLER_NOT_FOUND, RUNTIME_MALFORMED_HANDLER_NAME,
        RUNTIME_BUILT_IN_MODULE_CONFLICT, RUNTIME_USER_CODE_SYNTAX_ERROR, RUNTIME_UNMARSHAL_ERROR,
        RUNTIME_MARSHAL_ERROR, RUNTIME_INIT_ERROR,
    }
)


def function_arn(
    name: str, qualifier: str | None = None, *, region: str = REGION, account: str = ACCOUNT_ID
) -> str:
    """`arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]`."""
    base = f"arn:aws:lambda:{region}:{account}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def iso_time(epoch: float | None = None, *, zulu: bool = True) -> str:
    """A UTC time in ISO-8601 with milliseconds, as Lambda writes it: `...Z`, or `+00:00` where
    Lambda's own field keeps the offset (a function's LastModified)."""
    when = datetime.now(timezone.utc) if epoch is None else datetime.fromtimestamp(
        epoch, timezone.utc
    )
    stamp = when.isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z") if zulu else stamp


def new_request_id() -> str:
    """A random version-4 UUID, as Lambda's request ids; half of uuid.uuid4()'s cost."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
