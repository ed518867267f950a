"""Lambda's function operations: create, get, list, update, delete, publish, list versions."""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from pathlib import Path
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from gateway.api import Call, operation
from gateway.errors import invalid
from gateway.invoke_api import split_function_name
from gateway.shapes import function_configuration, page
from warren.function import LATEST, FunctionSpec
from warren.store.registry import Registry

FUNCTIONS = "/2015-03-31/functions"
ONE = FUNCTIONS + "/{FunctionName}"
UNSUPPORTED_CODE = ("S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri")


def _name(call: Call) -> str:
    name, qualifier = split_function_name(call.path("FunctionName"))
    if qualifier:
        raise invalid("this operation takes an unqualified function name")
    return name


def _zip(code: Any) -> bytes:
    if not isinstance(code, dict):
        raise invalid("Code must be an object with ZipFile")
    for key in UNSUPPORTED_CODE:
        if code.get(key):
            raise invalid(f"Code.{key} is not supported by Warren: upload the zip as Code.ZipFile")
    raw = code.get("ZipFile")
    if not isinstance(raw, str) or not raw:
        raise invalid("Code.ZipFile (the zip, base64-encoded) is required")
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise invalid("Code.ZipFile must be base64") from None


def _with_zip(data: bytes, fn: Any) -> Any:
    """`fn(path)` with the zip in a private temporary file (the registry reads paths)."""
    handle, name = tempfile.mkstemp(suffix=".zip", prefix="warren-gateway-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        return fn(Path(name))
    finally:
        os.unlink(name)


def _env(body: dict[str, Any]) -> dict[str, str] | None:
    env = body.get("Environment")
    if env is None:
        return None
    if not isinstance(env, dict) or not isinstance(env.get("Variables", {}), dict):
        raise invalid("Environment must be {\"Variables\": {NAME: VALUE}}")
    return dict(env.get("Variables") or {})


def _config_changes(body: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for field, key in (("Handler", "handler"), ("Runtime", "runtime"),
                       ("MemorySize", "memory_mb"), ("Timeout", "timeout_s"),
                       ("Description", "description")):
        if body.get(field) is not None:
            changes[key] = body[field]
    env = _env(body)
    if env is not None:
        changes["env"] = env
    layers = body.get("Layers")
    if layers is not None:  # layer version ARNs, in order; [] drops them all
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise invalid("Layers must be a list of layer version ARNs")
        changes["layers"] = layers
    storage = body.get("EphemeralStorage")
    if storage is not None:  # Lambda's {"Size": MB}, 512-10240, the function's /tmp
        if not isinstance(storage, dict) or not isinstance(storage.get("Size"), int):
            raise invalid("EphemeralStorage must be {\"Size\": MB}")
        changes["ephemeral_storage_mb"] = storage["Size"]
    return changes


@operation()
async def create_function(call: Call) -> Response:
    body = call.json()
    name, qualifier = split_function_name(str(body.get("FunctionName") or ""))
    if qualifier:
        raise invalid("FunctionName must not be qualified")
    if body.get("PackageType", "Zip") != "Zip":
        raise invalid("only PackageType Zip is supported")
    if not body.get("Runtime") or not body.get("Handler"):
        raise invalid("Runtime and Handler are required for a Zip function")
    data = _zip(body.get("Code"))
    options = _config_changes(body)
    registry: Registry = call.gateway.registry

    def create(path: Path) -> FunctionSpec:
        spec = registry.create_function(name, code=path, **options)
        if body.get("Publish"):
            spec = registry.publish_version(name)
        return spec

    spec = await call.blocking(_with_zip, data, create)
    return call.respond(function_configuration(spec), 201)


@operation()
async def get_function(call: Call) -> Response:
    name, qualifier = split_function_name(call.path("FunctionName"), call.query("Qualifier"))
    registry: Registry = call.gateway.registry
    spec = await call.blocking(registry.get_function, name, qualifier)
    reserved = await call.blocking(registry.get_concurrency, name)
    out: dict[str, Any] = {
        "Configuration": function_configuration(spec),
        "Code": {"RepositoryType": "Warren", "Location": f"warren-code:{spec.code_sha256}"},
    }
    if reserved is not None:
        out["Concurrency"] = {"ReservedConcurrentExecutions": reserved}
    return call.respond(out)


@operation()
async def get_configuration(call: Call) -> Response:
    name, qualifier = split_function_name(call.path("FunctionName"), call.query("Qualifier"))
    spec = await call.blocking(call.gateway.registry.get_function, name, qualifier)
    return call.respond(function_configuration(spec))


@operation()
async def list_functions(call: Call) -> Response:
    registry: Registry = call.gateway.registry
    specs = await call.blocking(registry.list_functions)
    if call.query("FunctionVersion") == "ALL":
        specs = [
            v for spec in specs for v in await call.blocking(registry.list_versions, spec.name)
        ]
    chunk, marker = page(specs, call.query("Marker"), call.query("MaxItems"))
    out: dict[str, Any] = {"Functions": [function_configuration(s) for s in chunk]}
    if marker:
        out["NextMarker"] = marker
    return call.respond(out)


@operation()
async def update_code(call: Call) -> Response:
    name = _name(call)
    body = call.json()
    data = _zip(body)
    registry: Registry = call.gateway.registry

    def update(path: Path) -> FunctionSpec:
        spec = registry.update_function(name, code=path)
        if body.get("Publish"):
            spec = registry.publish_version(name)
        return spec

    spec = await call.blocking(_with_zip, data, update)
    return call.respond(function_configuration(spec))


@operation()
async def update_configuration(call: Call) -> Response:
    name = _name(call)
    changes = _config_changes(call.json())
    spec = await call.blocking(call.gateway.registry.update_function, name, **changes)
    return call.respond(function_configuration(spec))


@operation()
async def delete_function(call: Call) -> Response:
    name, qualifier = split_function_name(call.path("FunctionName"), call.query("Qualifier"))
    if qualifier and qualifier != LATEST:
        raise invalid("Warren deletes a function with all its versions: drop the Qualifier")
    await call.blocking(call.gateway.registry.delete_function, name)
    await call.blocking(call.gateway.urls.delete_function, name)
    return call.respond(None, 204)


@operation()
async def publish_version(call: Call) -> Response:
    name = _name(call)
    description = str(call.json().get("Description") or "")
    spec = await call.blocking(call.gateway.registry.publish_version, name, description)
    return call.respond(function_configuration(spec), 201)


@operation()
async def list_versions(call: Call) -> Response:
    name = _name(call)
    specs = await call.blocking(call.gateway.registry.list_versions, name)
    chunk, marker = page(specs, call.query("Marker"), call.query("MaxItems"))
    out: dict[str, Any] = {"Versions": [function_configuration(s) for s in chunk]}
    if marker:
        out["NextMarker"] = marker
    return call.respond(out)


ROUTES = [
    Route(FUNCTIONS, create_function, methods=["POST"]),
    Route(FUNCTIONS, list_functions, methods=["GET"]),
    Route(FUNCTIONS + "/", list_functions, methods=["GET"]),
    Route(ONE, get_function, methods=["GET"]),
    Route(ONE, delete_function, methods=["DELETE"]),
    Route(ONE + "/configuration", get_configuration, methods=["GET"]),
    Route(ONE + "/configuration", update_configuration, methods=["PUT"]),
    Route(ONE + "/code", update_code, methods=["PUT"]),
    Route(ONE + "/versions", publish_version, methods=["POST"]),
    Route(ONE + "/versions", list_versions, methods=["GET"]),
]
