"""The read-only console: static files under /console/ and the JSON they poll.

Open when the gateway runs with `--auth none`; otherwise a person signs in with an access key
(`warren key create`): the secret is checked once and a cookie carries the key id, an expiry
and an HMAC of both under the key's secret, so deleting the key ends every session at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.console_data import logs, overview, series, usage
from warren.store.accesskeys import SecretLookup

STATIC = Path(__file__).parent / "console"
COOKIE = "warren_console"
SESSION_S = 12 * 3600


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS), status,
                    media_type="application/json", headers={"Cache-Control": "no-store"})


def _mac(secret: str, key_id: str, expires: int) -> str:
    return hmac.new(secret.encode(), f"{key_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def _lookup(gw: Any) -> SecretLookup:
    lookup: SecretLookup | None = getattr(gw, "console_secrets", None)
    if lookup is None:
        lookup = gw.console_secrets = SecretLookup(gw.aredis, gw.settings.prefix)
    return lookup


async def _signed_in(request: Request) -> bool:
    gw = request.app.state.gateway
    if gw.options.auth == "none":
        return True
    key_id, _, rest = request.cookies.get(COOKIE, "").partition(":")
    expires, _, mac = rest.partition(":")
    if not key_id or not expires.isdigit() or int(expires) < time.time():
        return False
    secret = await _lookup(gw)(key_id)
    return secret is not None and hmac.compare_digest(mac, _mac(secret, key_id, int(expires)))


async def session(request: Request) -> Response:
    gw = request.app.state.gateway
    return _json({"auth": gw.options.auth, "signed_in": await _signed_in(request)})


async def login(request: Request) -> Response:
    gw = request.app.state.gateway
    try:
        body = orjson.loads(await request.body())
        key_id, secret = str(body["key_id"]), str(body["secret"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return _json({"error": "send {\"key_id\": ..., \"secret\": ...}"}, 400)
    known = await _lookup(gw)(key_id)
    if known is None or not hmac.compare_digest(known, secret):
        return _json({"error": "unknown key id or wrong secret"}, 403)
    expires = int(time.time()) + SESSION_S
    reply = _json({"signed_in": True})
    reply.set_cookie(COOKIE, f"{key_id}:{expires}:{_mac(known, key_id, expires)}",
                     max_age=SESSION_S, httponly=True, samesite="strict",
                     secure=request.url.scheme == "https", path="/console")
    return reply


def _reader(read: Any) -> Any:
    """A JSON endpoint that needs a session and runs its Redis reads on a worker thread."""

    async def endpoint(request: Request) -> Response:
        if not await _signed_in(request):
            return _json({"error": "sign in with an access key"}, 401)
        gw = request.app.state.gateway
        params = dict(request.query_params)
        try:
            return _json(await asyncio.to_thread(read, gw, params))
        except LookupError as exc:
            return _json({"error": str(exc)}, 404)
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)

    return endpoint


async def to_console(_request: Request) -> Response:
    return RedirectResponse("/console/", 308)


ROUTES: list[BaseRoute] = [
    Route("/console", to_console, methods=["GET"]),
    Route("/console/api/session", session, methods=["GET"]),
    Route("/console/api/login", login, methods=["POST"]),
    Route("/console/api/overview", _reader(overview), methods=["GET"]),
    Route("/console/api/series", _reader(series), methods=["GET"]),
    Route("/console/api/logs", _reader(logs), methods=["GET"]),
    Route("/console/api/usage", _reader(usage), methods=["GET"]),
    Mount("/console", app=StaticFiles(directory=STATIC, html=True), name="console"),
]
