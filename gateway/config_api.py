"""Reserved concurrency and the event invoke config (async retries, event age, destinations)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from gateway.api import Call, operation
from gateway.errors import invalid, not_found
from gateway.functions_api import _name
from gateway.invoke_api import split_function_name
from gateway.shapes import event_invoke_config
from warren.function import LATEST, AsyncConfig

CONCURRENCY_PUT = "/2017-10-31/functions/{FunctionName}/concurrency"
CONCURRENCY_GET = "/2019-09-30/functions/{FunctionName}/concurrency"
EVENT_CONFIG = "/2019-09-25/functions/{FunctionName}/event-invoke-config"
DEFAULT_ASYNC = AsyncConfig()


@operation()
async def put_concurrency(call: Call) -> Response:
    name = _name(call)
    n = call.json().get("ReservedConcurrentExecutions")
    if isinstance(n, bool) or not isinstance(n, int):
        raise invalid("ReservedConcurrentExecutions must be a whole number")
    await call.blocking(call.gateway.registry.set_concurrency, name, n)
    return call.respond({"ReservedConcurrentExecutions": n})


@operation()
async def get_concurrency(call: Call) -> Response:
    name = _name(call)
    registry = call.gateway.registry
    await call.blocking(registry.get_function, name)  # 404 for an unknown function
    n = await call.blocking(registry.get_concurrency, name)
    return call.respond({} if n is None else {"ReservedConcurrentExecutions": n})


@operation()
async def delete_concurrency(call: Call) -> Response:
    await call.blocking(call.gateway.registry.clear_concurrency, _name(call))
    return call.respond(None, 204)


def _latest_only(call: Call) -> tuple[str, str | None]:
    name, qualifier = split_function_name(call.path("FunctionName"), call.query("Qualifier"))
    return name, qualifier


def _destination(config: Any, which: str) -> str | None:
    entry = (config or {}).get(which) or {}
    value = entry.get("Destination") if isinstance(entry, dict) else None
    return str(value) if value else None


async def _write_event_config(call: Call, replace_all: bool) -> Response:
    name, qualifier = _latest_only(call)
    if qualifier not in (None, LATEST):
        raise invalid("Warren keeps one event invoke config per function: use $LATEST")
    body = call.json()
    destinations = body.get("DestinationConfig")
    changes: dict[str, Any] = {}
    for field, key, default in (
        ("MaximumRetryAttempts", "max_retries", DEFAULT_ASYNC.max_retries),
        ("MaximumEventAgeInSeconds", "max_event_age_s", DEFAULT_ASYNC.max_event_age_s),
    ):
        if body.get(field) is not None:
            changes[key] = body[field]
        elif replace_all:
            changes[key] = default
    if destinations is not None or replace_all:
        # "" clears a destination in the registry's update.
        changes["on_success"] = _destination(destinations, "OnSuccess") or ""
        changes["on_failure"] = _destination(destinations, "OnFailure") or ""
    spec = await call.blocking(call.gateway.registry.update_function, name, **changes)
    return call.respond(event_invoke_config(spec, qualifier))


@operation()
async def put_event_config(call: Call) -> Response:
    return await _write_event_config(call, replace_all=True)


@operation()
async def update_event_config(call: Call) -> Response:
    return await _write_event_config(call, replace_all=False)


@operation()
async def get_event_config(call: Call) -> Response:
    name, qualifier = _latest_only(call)
    spec = await call.blocking(call.gateway.registry.get_function, name, qualifier)
    if spec.async_config == DEFAULT_ASYNC:
        raise not_found(f"The function {spec.arn} doesn't have an EventInvokeConfig")
    return call.respond(event_invoke_config(spec, qualifier))


@operation()
async def delete_event_config(call: Call) -> Response:
    name, qualifier = _latest_only(call)
    spec = await call.blocking(call.gateway.registry.get_function, name, qualifier)
    if spec.async_config == DEFAULT_ASYNC:
        raise not_found(f"The function {spec.arn} doesn't have an EventInvokeConfig")
    await call.blocking(
        call.gateway.registry.update_function,
        name,
        max_retries=DEFAULT_ASYNC.max_retries,
        max_event_age_s=DEFAULT_ASYNC.max_event_age_s,
        on_success="",
        on_failure="",
    )
    return call.respond(None, 204)


ROUTES = [
    Route(CONCURRENCY_PUT, put_concurrency, methods=["PUT"]),
    Route(CONCURRENCY_PUT, delete_concurrency, methods=["DELETE"]),
    Route(CONCURRENCY_GET, get_concurrency, methods=["GET"]),
    Route(EVENT_CONFIG, put_event_config, methods=["PUT"]),
    Route(EVENT_CONFIG, update_event_config, methods=["POST"]),
    Route(EVENT_CONFIG, get_event_config, methods=["GET"]),
    Route(EVENT_CONFIG, delete_event_config, methods=["DELETE"]),
]
