"""Lambda's provisioned concurrency operations: put, get, delete and list a function's configs."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from gateway.api import Call, operation
from gateway.errors import ApiError, invalid
from gateway.functions_api import _name
from gateway.invoke_api import split_function_name
from gateway.shapes import lambda_time
from warren.aws import function_arn
from warren.errors import NotFound
from warren.function import DEFAULT_POOL
from warren.store.registry import Registry

PATH = "/2019-09-30/functions/{FunctionName}/provisioned-concurrency"


def _views(registry: Registry, name: str, qualifier: str | None) -> list[dict[str, Any]]:
    configs = [c for c in registry.provisioned.all()
               if c.function == name and qualifier in (None, c.qualifier)]

    def pool_of(function: str) -> str:
        try:
            return registry.get_function(function).pool
        except NotFound:
            return DEFAULT_POOL

    return registry.provisioned.status(configs, pool_of)


def config_shape(view: dict[str, Any]) -> dict[str, Any]:
    # Lambda's Allocated and Available both count environments ready to serve: Warren's `ready`.
    body: dict[str, Any] = {
        "RequestedProvisionedConcurrentExecutions": view["requested"],
        "AllocatedProvisionedConcurrentExecutions": view["ready"],
        "AvailableProvisionedConcurrentExecutions": view["ready"],
        "Status": view["state"],
        "LastModified": lambda_time(view["last_modified"]),
    }
    if view["reason"] and view["state"] == "FAILED":
        body["StatusReason"] = view["reason"]
    return body


def _target(call: Call) -> tuple[str, str]:
    name, qualifier = split_function_name(call.path("FunctionName"), call.query("Qualifier"))
    if not qualifier:
        raise invalid("Qualifier (a published version or an alias) is required")
    return name, qualifier


@operation()
async def put_config(call: Call) -> Response:
    name, qualifier = _target(call)
    n = call.json().get("ProvisionedConcurrentExecutions")
    if isinstance(n, bool) or not isinstance(n, int):
        raise invalid("ProvisionedConcurrentExecutions must be a whole number")
    registry: Registry = call.gateway.registry
    await call.blocking(registry.provisioned.put, name, qualifier, n)
    views = await call.blocking(_views, registry, name, qualifier)
    return call.respond(config_shape(views[0]), 202)


@operation()
async def get_config(call: Call) -> Response:
    if call.query("List") == "ALL":
        return await list_configs(call)
    name, qualifier = _target(call)
    views = await call.blocking(_views, call.gateway.registry, name, qualifier)
    if not views:
        raise ApiError("ProvisionedConcurrencyConfigNotFoundException", 404,
                       f"No Provisioned Concurrency Config found for this function: "
                       f"{function_arn(name, qualifier)}")
    return call.respond(config_shape(views[0]))


async def list_configs(call: Call) -> Response:
    name = _name(call)
    registry: Registry = call.gateway.registry
    await call.blocking(registry.get_function, name)  # 404 for an unknown function
    views = await call.blocking(_views, registry, name, None)
    return call.respond({"ProvisionedConcurrencyConfigs": [
        {"FunctionArn": function_arn(name, v["qualifier"]), **config_shape(v)} for v in views
    ]})


@operation()
async def delete_config(call: Call) -> Response:
    name, qualifier = _target(call)
    await call.blocking(call.gateway.registry.provisioned.delete, name, qualifier)
    return call.respond(None, 204)


ROUTES = [
    Route(PATH, put_config, methods=["PUT"]),
    Route(PATH, get_config, methods=["GET"]),
    Route(PATH, delete_config, methods=["DELETE"]),
]
