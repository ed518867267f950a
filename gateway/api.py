"""What every Lambda API operation does around its own work: limits, SigV4, errors, JSON."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import ApiError, bad_content, error_response, from_warren, too_large
from gateway.sigv4 import SignedRequest
from warren.aws import new_request_id
from warren.errors import WarrenError

log = logging.getLogger("warren.gateway")

MANAGEMENT_LIMIT = 70 * 1024 * 1024  # a 50 MB zip, base64-encoded in JSON
T = TypeVar("T")


@dataclass
class Call:
    """One API request after its body was read and its signature checked."""

    request: Request
    body: bytes
    request_id: str
    gateway: Any

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            data = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise bad_content("Could not parse request body into json") from None
        if not isinstance(data, dict):
            raise bad_content("The request body must be a JSON object")
        return data

    async def blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a call of the core's sync stores on a worker thread."""
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    def respond(
        self, obj: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        body = b"" if obj is None else orjson.dumps(obj)
        return Response(
            body,
            status_code=status,
            headers={"x-amzn-RequestId": self.request_id, **(headers or {})},
            media_type="application/json",
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to pass `limit` (before buffering)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise bad_content("Content-Length is not a number") from None
        if size > limit:
            raise too_large(limit)
    chunks = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def authorize(gateway: Any, request: Request, body: bytes) -> None:
    if gateway.options.auth == "none":
        return
    scope = request.scope
    raw_path = scope.get("raw_path") or scope["path"].encode()
    signed = SignedRequest(
        method=request.method,
        raw_path=raw_path.decode("latin-1").split("?", 1)[0],
        raw_query=scope.get("query_string", b"").decode("latin-1"),
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
        body=body,
    )
    await gateway.verifier.verify(signed)


Handler = Callable[[Call], Awaitable[Response]]


def operation(
    limit: int | Callable[[Request], int] = MANAGEMENT_LIMIT,
) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Wrap an operation: read the body under `limit`, verify SigV4, map errors to Lambda's."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            request_id = new_request_id()
            gateway = request.app.state.gateway
            try:
                cap = limit(request) if callable(limit) else limit
                body = await read_body(request, cap)
                await authorize(gateway, request, body)
                return await handler(Call(request, body, request_id, gateway))
            except ApiError as exc:
                return error_response(exc, request_id)
            except WarrenError as exc:
                return error_response(from_warren(exc), request_id)
            except Exception:
                log.exception("operation %s failed", handler.__name__)
                return error_response(
                    ApiError("ServiceException", 500, "the gateway failed; see its log"),
                    request_id,
                )

        return endpoint

    return wrap
