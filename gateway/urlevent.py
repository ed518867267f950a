"""A function URL's HTTP request as API Gateway's payload format 2.0, and a result as HTTP."""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

import orjson

# Bodies of these types reach the handler as text; anything else (or bytes that are not UTF-8)
# as base64 with isBase64Encoded, as Lambda's function URLs do.
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript",
               "application/x-www-form-urlencoded", "+json", "+xml")


@dataclass(frozen=True)
class HttpRequest:
    method: str
    raw_path: str  # relative to the URL, starting with "/"
    raw_query: str
    headers: Iterable[tuple[str, str]]
    body: bytes
    source_ip: str
    domain: str
    url_id: str
    request_id: str
    protocol: str = "HTTP/1.1"


@functools.lru_cache(maxsize=4)
def _clock_time(second: int) -> str:
    """API Gateway's `time` (`12/Mar/2020:19:03:58 +0000`), formatted once per second."""
    return datetime.fromtimestamp(second, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _is_text(content_type: str) -> bool:
    lowered = content_type.lower()
    return any(marker in lowered for marker in _TEXT_TYPES)


def event(request: HttpRequest, now: float | None = None) -> dict[str, Any]:
    """The event a URL's function receives (version 2.0, routeKey `$default`)."""
    stamp = time.time() if now is None else now
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    body: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
        "headers": headers,
    }
    if cookies:
        body["cookies"] = cookies
    params: dict[str, str] = {}
    for key, value in parse_qsl(request.raw_query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    if params:
        body["queryStringParameters"] = params
    body["requestContext"] = {
        "accountId": "anonymous",
        "apiId": request.url_id,
        "domainName": request.domain,
        "domainPrefix": request.url_id,
        "http": {
            "method": request.method,
            "path": request.raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request.request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": _clock_time(int(stamp)),
        "timeEpoch": int(stamp * 1000),
    }
    if request.body:
        if _is_text(headers.get("content-type", "text/plain")):
            try:
                body["body"] = request.body.decode("utf-8")
                body["isBase64Encoded"] = False
            except UnicodeDecodeError:
                body["body"] = base64.b64encode(request.body).decode()
                body["isBase64Encoded"] = True
        else:
            body["body"] = base64.b64encode(request.body).decode()
            body["isBase64Encoded"] = True
    else:
        body["isBase64Encoded"] = False
    return body


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def response(payload: bytes) -> HttpResponse:
    """Lambda's mapping of a URL function's result: a `statusCode` object is taken apart; any
    other JSON result is a 200 `application/json` body as it is."""
    try:
        result = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        result = None
    if not isinstance(result, dict) or "statusCode" not in result:
        return HttpResponse(200, [("content-type", "application/json")], payload or b"")
    try:
        status = int(result["statusCode"])
    except (TypeError, ValueError):
        return HttpResponse(502, [("content-type", "application/json")],
                            b'{"Message":"Internal Server Error"}')
    headers = [(str(k).lower(), str(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name).lower(), str(v)) for v in values or [])
    headers.extend(("set-cookie", str(c)) for c in result.get("cookies") or [])
    raw = result.get("body")
    if raw is None:
        data = b""
    elif result.get("isBase64Encoded"):
        data = base64.b64decode(str(raw))
    elif isinstance(raw, str):
        data = raw.encode()
    else:
        data = orjson.dumps(raw)
    if not any(name == "content-type" for name, _ in headers) and data:
        headers.append(("content-type", "application/json"))
    return HttpResponse(status, headers, data)


def cors_headers(
    cors: dict[str, Any], origin: str | None, preflight: bool
) -> list[tuple[str, str]]:
    """The CORS headers a URL's config gives a request from `origin` (none if not allowed)."""
    if not cors or not origin:
        return []
    origins = cors.get("AllowOrigins") or []
    if "*" not in origins and origin not in origins:
        return []
    out = [("access-control-allow-origin", "*" if "*" in origins else origin)]
    if cors.get("AllowCredentials"):
        out.append(("access-control-allow-credentials", "true"))
    if cors.get("ExposeHeaders") and not preflight:
        out.append(("access-control-expose-headers", ",".join(cors["ExposeHeaders"])))
    if preflight:
        if cors.get("AllowMethods"):
            out.append(("access-control-allow-methods", ",".join(cors["AllowMethods"])))
        if cors.get("AllowHeaders"):
            out.append(("access-control-allow-headers", ",".join(cors["AllowHeaders"])))
        if cors.get("MaxAge") is not None:
            out.append(("access-control-max-age", str(cors["MaxAge"])))
    if origin and "*" not in origins:
        out.append(("vary", "Origin"))
    return out
