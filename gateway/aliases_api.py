"""Lambda's alias operations: create, get, update (RoutingConfig weights), delete, list."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from gateway.api import Call, operation
from gateway.errors import invalid
from gateway.functions_api import ONE, _name
from gateway.shapes import alias_configuration, page

ALIASES = ONE + "/aliases"


def _weights(body: dict[str, Any]) -> dict[str, float] | None:
    routing = body.get("RoutingConfig")
    if routing is None:
        return None
    if not isinstance(routing, dict):
        raise invalid("RoutingConfig must be {\"AdditionalVersionWeights\": {VERSION: WEIGHT}}")
    weights = routing.get("AdditionalVersionWeights") or {}
    if not isinstance(weights, dict):
        raise invalid("AdditionalVersionWeights must map a version to a weight")
    return {str(k): v for k, v in weights.items()}


@operation()
async def create_alias(call: Call) -> Response:
    name = _name(call)
    body = call.json()
    alias = await call.blocking(
        call.gateway.registry.create_alias,
        name,
        str(body.get("Name") or ""),
        str(body.get("FunctionVersion") or ""),
        _weights(body),
        str(body.get("Description") or ""),
    )
    return call.respond(alias_configuration(alias), 201)


@operation()
async def get_alias(call: Call) -> Response:
    alias = await call.blocking(call.gateway.registry.get_alias, _name(call), call.path("Name"))
    return call.respond(alias_configuration(alias))


@operation()
async def update_alias(call: Call) -> Response:
    body = call.json()
    version = body.get("FunctionVersion")
    alias = await call.blocking(
        call.gateway.registry.update_alias,
        _name(call),
        call.path("Name"),
        None if version is None else str(version),
        _weights(body),
        body.get("Description"),
    )
    return call.respond(alias_configuration(alias))


@operation()
async def delete_alias(call: Call) -> Response:
    await call.blocking(call.gateway.registry.delete_alias, _name(call), call.path("Name"))
    return call.respond(None, 204)


@operation()
async def list_aliases(call: Call) -> Response:
    aliases = await call.blocking(call.gateway.registry.list_aliases, _name(call))
    version = call.query("FunctionVersion")
    if version:
        aliases = [a for a in aliases if a.version == version]
    chunk, marker = page(aliases, call.query("Marker"), call.query("MaxItems"))
    out: dict[str, Any] = {"Aliases": [alias_configuration(a) for a in chunk]}
    if marker:
        out["NextMarker"] = marker
    return call.respond(out)


ROUTES = [
    Route(ALIASES, create_alias, methods=["POST"]),
    Route(ALIASES, list_aliases, methods=["GET"]),
    Route(ALIASES + "/{Name}", get_alias, methods=["GET"]),
    Route(ALIASES + "/{Name}", update_alias, methods=["PUT"]),
    Route(ALIASES + "/{Name}", delete_alias, methods=["DELETE"]),
]
