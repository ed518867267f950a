"""The function URL trigger: any method and path under /url/<id>/ invokes the URL's function."""

from __future__ import annotations

import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api import authorize, read_body
from gateway.errors import ApiError
from gateway.invoker import MAX_SYNC_PAYLOAD
from gateway.urlevent import HttpRequest, cors_headers, event, response
from gateway.urls_api import URL_PATH
from warren.aws import new_request_id
from warren.errors import NotFound, TooManyRequests, Unavailable, WarrenError

log = logging.getLogger("warren.gateway")


def _plain(status: int, message: str, request_id: str) -> Response:
    # Function URLs answer errors as Lambda's do: {"Message": ...}, not the API's error shape.
    return Response(
        orjson.dumps({"Message": message}),
        status_code=status,
        headers={"x-amzn-RequestId": request_id},
        media_type="application/json",
    )


def _relative_path(request: Request, url_id: str) -> str:
    raw_bytes: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    raw = raw_bytes.decode("latin-1").split("?", 1)[0]
    rest = raw[len(URL_PATH) + len(url_id) :]
    return rest if rest.startswith("/") else "/" + rest


async def url_endpoint(request: Request) -> Response:
    gw = request.app.state.gateway
    request_id = new_request_id()
    url_id = str(request.path_params["url_id"])
    try:
        config = await gw.urls.lookup(url_id)
        if config is None:
            return _plain(404, "Not Found", request_id)
        origin = request.headers.get("origin")
        if (
            request.method == "OPTIONS"
            and config.cors
            and request.headers.get("access-control-request-method")
        ):
            return Response(
                b"", 200, headers=dict(cors_headers(config.cors, origin, preflight=True))
            )
        body = await read_body(request, MAX_SYNC_PAYLOAD)
        if config.auth_type == "AWS_IAM":
            await authorize(gw, request, body)
        spec = await gw.invoker.resolve(config.function, config.qualifier)
        client = request.client
        payload = event(
            HttpRequest(
                method=request.method,
                raw_path=_relative_path(request, url_id),
                raw_query=request.scope.get("query_string", b"").decode("latin-1"),
                headers=[(k.decode("latin-1"), v.decode("latin-1"))
                         for k, v in request.scope["headers"]],
                body=body,
                source_ip=client.host if client else "",
                domain=request.headers.get("host", ""),
                url_id=url_id,
                request_id=request_id,
                protocol=f"HTTP/{request.scope.get('http_version', '1.1')}",
            )
        )
        reply = await gw.invoker.call(spec, orjson.dumps(payload), request_id)
    except ApiError as exc:
        if exc.status == 403:
            return _plain(403, "Forbidden", request_id)
        return _plain(exc.status, exc.message, request_id)
    except TooManyRequests:
        return _plain(429, "Rate Exceeded.", request_id)
    except NotFound:
        return _plain(404, "Not Found", request_id)
    except Unavailable as exc:
        log.warning("function URL %s: %s", url_id, exc)
        return _plain(503, "Service Unavailable", request_id)
    except WarrenError as exc:
        return _plain(400, str(exc), request_id)
    if reply.function_error:
        return _plain(502, "Internal Server Error", request_id)
    out = response(reply.payload)
    headers = out.headers + cors_headers(config.cors, origin, preflight=False)
    headers.append(("x-amzn-requestid", request_id))
    result = Response(out.body, status_code=out.status)
    result.raw_headers = [
        *(h for h in result.raw_headers if h[0] == b"content-length"),
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers),
    ]
    return result


METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ROUTES = [
    Route(URL_PATH + "{url_id}", url_endpoint, methods=METHODS),
    Route(URL_PATH + "{url_id}/{path:path}", url_endpoint, methods=METHODS),
]
