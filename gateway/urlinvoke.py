"""The function URL trigger: any method and path under /url/<id>/ invokes the URL's function.

It answers in plain ASGI, in front of Starlette's router and middleware: a URL request is the
gateway's hot path, and it needs nothing of them (measured: a third of the gateway's CPU per
request went to them).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from gateway.errors import ApiError, too_large
from gateway.invoker import MAX_SYNC_PAYLOAD
from gateway.sigv4 import SignedRequest
from gateway.urlevent import HttpRequest, cors_headers, event, response
from gateway.urls_api import URL_PATH
from warren.aws import new_request_id
from warren.errors import NotFound, TooManyRequests, Unavailable, WarrenError

log = logging.getLogger("warren.gateway")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
_JSON = (b"content-type", b"application/json")


def is_url_request(scope: Scope) -> bool:
    return scope["type"] == "http" and str(scope["path"]).startswith(URL_PATH)


async def _send(send: Send, status: int, headers: Headers, body: bytes) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _plain(send: Send, status: int, message: str, request_id: str) -> None:
    # Function URLs answer errors as Lambda's do: {"Message": ...}, not the API's error shape.
    body = orjson.dumps({"Message": message})
    await _send(send, status, [_JSON, (b"x-amzn-requestid", request_id.encode())], body)


async def _body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to pass `limit`, before buffering it."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise too_large(limit)
    chunks = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError("InvalidRequestContentException", 400, "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        more = bool(message.get("more_body"))
    return b"".join(chunks)


def _split(scope: Scope) -> tuple[str, str, str]:
    """(url id, raw path relative to the URL, raw query) of a request under /url/."""
    raw: bytes = scope.get("raw_path") or str(scope["path"]).encode()
    rest = raw.decode("latin-1").split("?", 1)[0][len(URL_PATH) :]
    url_id, slash, path = rest.partition("/")
    return url_id, "/" + path, bytes(scope.get("query_string", b"")).decode("latin-1")


async def url_app(gateway: Any, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one request to a function URL."""
    request_id = new_request_id()
    url_id, path, query = _split(scope)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    lookup = dict(headers)  # the last of a repeated header, enough for these few
    lowered = {k.lower(): v for k, v in lookup.items()}
    method = str(scope["method"])
    try:
        config = await gateway.urls.lookup(url_id)
        if config is None:
            await _plain(send, 404, "Not Found", request_id)
            return
        origin = lowered.get("origin")
        if method == "OPTIONS" and config.cors and "access-control-request-method" in lowered:
            cors = cors_headers(config.cors, origin, preflight=True)
            await _send(send, 200, [(k.encode(), v.encode()) for k, v in cors], b"")
            return
        body = await _body(scope, receive, MAX_SYNC_PAYLOAD)
        if config.auth_type == "AWS_IAM" and gateway.options.auth != "none":
            raw: bytes = scope.get("raw_path") or str(scope["path"]).encode()
            signed = SignedRequest(method, raw.decode("latin-1").split("?", 1)[0], query,
                                   headers, body)
            await gateway.verifier.verify(signed)
        spec = await gateway.invoker.resolve(config.function, config.qualifier)
        client = scope.get("client")
        payload = event(
            HttpRequest(
                method=method,
                raw_path=path,
                raw_query=query,
                headers=headers,
                body=body,
                source_ip=client[0] if client else "",
                domain=lowered.get("host", ""),
                url_id=url_id,
                request_id=request_id,
                protocol=f"HTTP/{scope.get('http_version', '1.1')}",
            )
        )
        reply = await gateway.invoker.call(spec, orjson.dumps(payload), request_id)
    except ApiError as exc:
        message = "Forbidden" if exc.status == 403 else exc.message
        await _plain(send, exc.status, message, request_id)
        return
    except TooManyRequests:
        await _plain(send, 429, "Rate Exceeded.", request_id)
        return
    except NotFound:
        await _plain(send, 404, "Not Found", request_id)
        return
    except Unavailable as exc:
        log.warning("function URL %s: %s", url_id, exc)
        await _plain(send, 503, "Service Unavailable", request_id)
        return
    except WarrenError as exc:
        await _plain(send, 400, str(exc), request_id)
        return
    if reply.function_error or reply.status >= 500:
        await _plain(send, 502, "Internal Server Error", request_id)
        return
    out = response(reply.payload)
    pairs = out.headers + cors_headers(config.cors, origin, preflight=False)
    encoded = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
    encoded.append((b"x-amzn-requestid", request_id.encode()))
    await _send(send, out.status, encoded, out.body)
