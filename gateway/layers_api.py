"""Lambda's layer operations: publish, get, list layers and their versions, delete a version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from gateway.api import Call, operation
from gateway.errors import invalid
from gateway.functions_api import _with_zip, _zip
from gateway.shapes import code_sha256, lambda_time, page
from warren.errors import NotFound
from warren.layer import LayerVersion, layer_arn
from warren.store.layers import LayerStore

LAYERS = "/2018-10-31/layers"
VERSIONS = LAYERS + "/{LayerName}/versions"
ONE = VERSIONS + "/{VersionNumber}"


def layer_version(layer: LayerVersion, full: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "LayerVersionArn": layer.arn,
        "Version": layer.version,
        "Description": layer.description,
        "CreatedDate": lambda_time(layer.created),
        "CompatibleRuntimes": list(layer.compatible_runtimes),
    }
    if full:
        body["LayerArn"] = layer_arn(layer.name)
        body["Content"] = {"Location": f"warren-code:{layer.code_sha256}",
                           "CodeSha256": code_sha256(layer.code_sha256),
                           "CodeSize": layer.code_size}
    return body


def _version(call: Call) -> int:
    raw = call.path("VersionNumber")
    if not raw.isdigit() or int(raw) < 1:
        raise invalid("VersionNumber must be a whole number >= 1")
    return int(raw)


def _matching(layers: list[LayerVersion], call: Call) -> list[LayerVersion]:
    runtime = call.query("CompatibleRuntime")
    return [x for x in layers if runtime is None or runtime in x.compatible_runtimes]


@operation()
async def publish_layer_version(call: Call) -> Response:
    name = call.path("LayerName")
    body = call.json()
    data = _zip(body.get("Content"))
    runtimes = body.get("CompatibleRuntimes") or []
    if not isinstance(runtimes, list):
        raise invalid("CompatibleRuntimes must be a list of runtime names")
    description = str(body.get("Description") or "")
    store: LayerStore = call.gateway.registry.layers

    def publish(path: Path) -> LayerVersion:
        return store.publish(name, path, [str(r) for r in runtimes], description)

    layer = await call.blocking(_with_zip, data, publish)
    return call.respond(layer_version(layer), 201)


@operation()
async def get_layer_version(call: Call) -> Response:
    store = call.gateway.registry.layers
    layer = await call.blocking(store.get, call.path("LayerName"), _version(call))
    return call.respond(layer_version(layer))


@operation()
async def list_layer_versions(call: Call) -> Response:
    store = call.gateway.registry.layers
    found = await call.blocking(store.versions, call.path("LayerName"))
    newest_first = list(reversed(_matching(found, call)))  # as Lambda lists them
    chunk, marker = page(newest_first, call.query("Marker"), call.query("MaxItems"))
    out: dict[str, Any] = {"LayerVersions": [layer_version(x, full=False) for x in chunk]}
    if marker:
        out["NextMarker"] = marker
    return call.respond(out)


@operation()
async def list_layers(call: Call) -> Response:
    store = call.gateway.registry.layers
    names = sorted({x.name for x in await call.blocking(store.latest)})
    latest = []
    for name in names:  # the newest version that matches the runtime filter, per layer
        matching = _matching(await call.blocking(store.versions, name), call)
        if matching:
            latest.append(matching[-1])
    chunk, marker = page(latest, call.query("Marker"), call.query("MaxItems"))
    out: dict[str, Any] = {"Layers": [
        {"LayerName": x.name, "LayerArn": layer_arn(x.name),
         "LatestMatchingVersion": layer_version(x, full=False)} for x in chunk
    ]}
    if marker:
        out["NextMarker"] = marker
    return call.respond(out)


@operation()
async def delete_layer_version(call: Call) -> Response:
    store = call.gateway.registry.layers
    try:
        await call.blocking(store.delete, call.path("LayerName"), _version(call))
    except NotFound:
        pass  # Lambda's DeleteLayerVersion succeeds for a version that is already gone
    return call.respond(None, 204)


ROUTES = [
    Route(LAYERS, list_layers, methods=["GET"]),
    Route(VERSIONS, publish_layer_version, methods=["POST"]),
    Route(VERSIONS, list_layer_versions, methods=["GET"]),
    Route(ONE, get_layer_version, methods=["GET"]),
    Route(ONE, delete_layer_version, methods=["DELETE"]),
]
