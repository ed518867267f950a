"""Lambda's Invoke operation: RequestResponse, Event (202) and DryRun (204), with its headers."""

from __future__ import annotations

import base64
import binascii

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api import Call, operation
from gateway.errors import ApiError, bad_content, invalid
from gateway.invoker import MAX_ASYNC_PAYLOAD, MAX_SYNC_PAYLOAD
from warren.function import LATEST, check_function_name
from warren.invocation import DRY_RUN, EVENT, INVOCATION_TYPES, REQUEST_RESPONSE

CLIENT_CONTEXT_MAX = 3583  # Lambda's limit on the base64 X-Amz-Client-Context header


def split_function_name(raw: str, qualifier: str | None = None) -> tuple[str, str | None]:
    """NAME, NAME:QUALIFIER, ACCOUNT:function:NAME[:Q] or a full ARN -> (name, qualifier).

    A qualifier both in the name and in `?Qualifier=` must agree, as Lambda requires.
    """
    parts = raw.split(":")
    if parts[0] == "arn":
        if len(parts) not in (7, 8) or parts[2] != "lambda" or parts[5] != "function":
            raise invalid(f"{raw!r} is not a Lambda function ARN")
        name, named = parts[6], (parts[7] if len(parts) == 8 else None)
    elif len(parts) in (3, 4) and parts[1] == "function":
        name, named = parts[2], (parts[3] if len(parts) == 4 else None)
    elif len(parts) in (1, 2):
        name, named = parts[0], (parts[1] if len(parts) == 2 else None)
    else:
        raise invalid(f"function name {raw!r} is invalid")
    check_function_name(name)
    if named == "":
        raise invalid(f"function name {raw!r} has an empty qualifier")
    if named and qualifier and named != qualifier:
        raise invalid("The derived qualifier from the function name does not match the qualifier")
    return name, named or qualifier or None


def service_message(payload: bytes) -> str:
    """The message of a worker's own failure ({"errorType": "ServiceException", ...})."""
    try:
        return str(orjson.loads(payload).get("errorMessage") or "the function could not run")
    except (orjson.JSONDecodeError, AttributeError):
        return "the function could not run"


def _limit(request: Request) -> int:
    kind = request.headers.get("x-amz-invocation-type", REQUEST_RESPONSE)
    return MAX_ASYNC_PAYLOAD if kind == EVENT else MAX_SYNC_PAYLOAD


def event_payload(body: bytes) -> bytes:
    """The event as JSON bytes; an empty body is `{}` as Lambda passes it."""
    if not body.strip():
        return b"{}"
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_content("Could not parse request body into json") from None
    return body


def client_context(raw: str | None) -> bytes | None:
    """X-Amz-Client-Context: base64 JSON, at most 3583 bytes; the handler gets it decoded as
    `context.client_context` (client, custom, env)."""
    if not raw:
        return None
    if len(raw) > CLIENT_CONTEXT_MAX:
        raise invalid("Client context must be 3583 bytes or fewer when base64-encoded")
    try:
        text = base64.b64decode(raw, validate=True)
        orjson.loads(text)
    except (binascii.Error, orjson.JSONDecodeError):
        raise invalid("Client context must be base64-encoded JSON") from None
    return text


@operation(limit=_limit)
async def invoke(call: Call) -> Response:
    headers = call.request.headers
    kind = headers.get("x-amz-invocation-type", REQUEST_RESPONSE)
    if kind not in INVOCATION_TYPES:
        raise invalid(f"X-Amz-Invocation-Type must be one of {', '.join(INVOCATION_TYPES)}")
    log_type = headers.get("x-amz-log-type", "None")
    if log_type not in ("None", "Tail"):
        raise invalid("X-Amz-Log-Type must be None or Tail")
    name, qualifier = split_function_name(call.path("FunctionName"), call.query("Qualifier"))
    context = client_context(headers.get("x-amz-client-context"))
    event = event_payload(call.body)
    invoker = call.gateway.invoker
    spec = await invoker.resolve(name, qualifier)
    if kind == DRY_RUN:
        return call.respond(None, 204, {"X-Amz-Executed-Version": spec.version})
    if kind == EVENT:
        await invoker.submit(spec, event, call.request_id, context)
        return call.respond(None, 202)
    reply = await invoker.call(
        spec, event, call.request_id, log_tail=log_type == "Tail", client_context=context
    )
    if reply.status >= 500:  # the worker could not run it (code missing, sandbox failed)
        raise ApiError("ServiceException", 500, service_message(reply.payload))
    out = {
        "x-amzn-RequestId": call.request_id,
        "X-Amz-Executed-Version": reply.executed_version or spec.version or LATEST,
    }
    if reply.function_error:
        out["X-Amz-Function-Error"] = reply.function_error
    if reply.log_result:
        out["X-Amz-Log-Result"] = reply.log_result
    return Response(
        reply.payload or b"null", status_code=200, headers=out, media_type="application/json"
    )


async def invoke_async(request: Request) -> Response:
    """The deprecated InvokeAsync (2014-11-13): an Event invoke answering {"Status": 202}."""
    return await _invoke_async(request)


@operation(limit=MAX_ASYNC_PAYLOAD)
async def _invoke_async(call: Call) -> Response:
    name, qualifier = split_function_name(call.path("FunctionName"))
    spec = await call.gateway.invoker.resolve(name, qualifier)
    await call.gateway.invoker.submit(spec, event_payload(call.body), call.request_id)
    return call.respond({"Status": 202}, 202)


ROUTES = [
    Route("/2015-03-31/functions/{FunctionName}/invocations", invoke, methods=["POST"]),
    Route("/2014-11-13/functions/{FunctionName}/invoke-async/", invoke_async, methods=["POST"]),
    Route("/2014-11-13/functions/{FunctionName}/invoke-async", invoke_async, methods=["POST"]),
]
