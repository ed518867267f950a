"""Lambda's function URL config operations (create, get, update, delete, list)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api import Call, operation
from gateway.errors import invalid
from gateway.invoke_api import split_function_name
from gateway.shapes import page
from warren.aws import function_arn
from warren.store.urls import UrlConfig

URL_CONFIG = "/2021-10-31/functions/{FunctionName}/url"
URL_LIST = "/2021-10-31/functions/{FunctionName}/urls"
URL_PATH = "/url/"  # a URL is http://<gateway>/url/<id>/...


def base_url(request: Request, public_url: str | None) -> str:
    """Where clients reach this gateway: --public-url, else the Host the request came to."""
    if public_url:
        return public_url.rstrip("/")
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return f"{request.url.scheme}://{host}"


def function_url(base: str, url_id: str) -> str:
    return f"{base}{URL_PATH}{url_id}/"


def shape(config: UrlConfig, base: str) -> dict[str, Any]:
    return {
        "FunctionUrl": function_url(base, config.url_id),
        "FunctionArn": function_arn(config.function, config.qualifier),
        "AuthType": config.auth_type,
        "Cors": config.cors,
        "CreationTime": config.created,
        "LastModifiedTime": config.modified,
        "InvokeMode": "BUFFERED",
    }


def _target(call: Call) -> tuple[str, str | None]:
    return split_function_name(call.path("FunctionName"), call.query("Qualifier"))


def _base(call: Call) -> str:
    return base_url(call.request, call.gateway.options.public_url)


def _check_mode(body: dict[str, Any]) -> None:
    if body.get("InvokeMode", "BUFFERED") != "BUFFERED":
        raise invalid("Warren's function URLs support InvokeMode BUFFERED only")


@operation()
async def create_url(call: Call) -> Response:
    name, qualifier = _target(call)
    body = call.json()
    _check_mode(body)
    await call.blocking(call.gateway.registry.get_function, name, qualifier)
    config = await call.blocking(
        call.gateway.urls.create, name, qualifier, str(body.get("AuthType") or ""),
        body.get("Cors"),
    )
    out = shape(config, _base(call))
    out.pop("LastModifiedTime")
    return call.respond(out, 201)


@operation()
async def get_url(call: Call) -> Response:
    name, qualifier = _target(call)
    config = await call.blocking(call.gateway.urls.get, name, qualifier)
    return call.respond(shape(config, _base(call)))


@operation()
async def update_url(call: Call) -> Response:
    name, qualifier = _target(call)
    body = call.json()
    _check_mode(body)
    config = await call.blocking(
        call.gateway.urls.update, name, qualifier, body.get("AuthType"), body.get("Cors")
    )
    return call.respond(shape(config, _base(call)))


@operation()
async def delete_url(call: Call) -> Response:
    name, qualifier = _target(call)
    await call.blocking(call.gateway.urls.delete, name, qualifier)
    return call.respond(None, 204)


@operation()
async def list_urls(call: Call) -> Response:
    name, _ = split_function_name(call.path("FunctionName"))
    await call.blocking(call.gateway.registry.get_function, name)
    configs = await call.blocking(call.gateway.urls.list, name)
    chunk, marker = page(configs, call.query("Marker"), call.query("MaxItems"))
    out: dict[str, Any] = {"FunctionUrlConfigs": [shape(c, _base(call)) for c in chunk]}
    if marker:
        out["NextMarker"] = marker
    return call.respond(out)


ROUTES = [
    Route(URL_CONFIG, create_url, methods=["POST"]),
    Route(URL_CONFIG, get_url, methods=["GET"]),
    Route(URL_CONFIG, update_url, methods=["PUT"]),
    Route(URL_CONFIG, delete_url, methods=["DELETE"]),
    Route(URL_LIST, list_urls, methods=["GET"]),
]
