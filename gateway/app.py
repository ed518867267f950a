"""The gateway's ASGI application: its parts built once per process, the routes, health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import orjson
import redis.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from broker_adapters.asyncbroker import AsyncBroker
from broker_adapters.sources import purge_source
from gateway.invoker import GatewayInvoker
from gateway.sigv4 import SigV4Verifier
from gateway.urlinvoke import Receive, Scope, Send, is_url_request, url_app
from warren.errors import ConfigError, WarrenError
from warren.keys import Keys
from warren.settings import Settings
from warren.store.accesskeys import SecretLookup
from warren.store.codes import CodeStore
from warren.store.mappings import MappingStore
from warren.store.redis import CONNECT_TIMEOUT_S, connect
from warren.store.registry import Registry
from warren.store.urls import UrlStore

log = logging.getLogger("warren.gateway")

AUTH_MODES = ("sigv4", "none")


@dataclass(frozen=True)
class GatewayOptions:
    """The gateway's own flags (`warren gateway --help`), carried to every worker process."""

    auth: str = "sigv4"
    public_url: str | None = None  # what FunctionUrl values start with; else the request's host
    queue_wait_s: float = 30.0
    max_chunk: int = 16

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> GatewayOptions:
        auth = environ.get("WARREN_GATEWAY_AUTH", "sigv4").strip().lower()
        if auth not in AUTH_MODES:
            raise ConfigError(f"WARREN_GATEWAY_AUTH must be one of {', '.join(AUTH_MODES)}")
        try:
            chunk = int(environ.get("WARREN_GATEWAY_MAX_CHUNK", "16"))
        except ValueError:
            chunk = 0
        if not 1 <= chunk <= 100:
            raise ConfigError("WARREN_GATEWAY_MAX_CHUNK must be 1-100")
        public = environ.get("WARREN_GATEWAY_PUBLIC_URL") or None
        return cls(auth=auth, public_url=public.rstrip("/") if public else None, max_chunk=chunk)

    def to_environ(self) -> dict[str, str]:
        env = {"WARREN_GATEWAY_AUTH": self.auth, "WARREN_GATEWAY_MAX_CHUNK": str(self.max_chunk)}
        if self.public_url:
            env["WARREN_GATEWAY_PUBLIC_URL"] = self.public_url
        return env


class Gateway:
    """The parts every handler uses, opened in the app's lifespan and closed after it."""

    def __init__(self, settings: Settings, options: GatewayOptions) -> None:
        self.settings = settings
        self.options = options
        self.topology = Keys(settings.prefix)
        # Management calls use the core's sync stores from worker threads; the hot path
        # (keys, admission, URL lookups) uses the async client on the loop.
        self.redis = connect(settings.redis)
        self.aredis = redis.asyncio.Redis.from_url(
            settings.redis.url, socket_connect_timeout=CONNECT_TIMEOUT_S
        )
        self.registry = Registry(
            self.redis,
            CodeStore(self.redis, settings.prefix),
            prefix=settings.prefix,
            account_concurrency=settings.account_concurrency,
        )
        self.mappings = MappingStore(
            self.redis, settings.prefix, functions=self.registry, purge=purge_source
        )
        self.urls = UrlStore(self.redis, self.aredis, settings.prefix)
        self.broker = AsyncBroker(
            settings.amqp, self.topology, name=f"warren-gateway-{os.getpid()}"
        )
        self.invoker = GatewayInvoker(
            settings,
            self.registry,
            self.aredis,
            self.broker,
            queue_wait_s=options.queue_wait_s,
            max_chunk=options.max_chunk,
        )
        self.verifier = SigV4Verifier(SecretLookup(self.aredis, settings.prefix))

    async def start(self) -> None:
        try:
            await self.broker.connect()
        except WarrenError as exc:  # the gateway still serves; /readyz says what is missing
            log.warning("starting without RabbitMQ: %s", exc)

    async def close(self) -> None:
        await self.invoker.park.close()
        await self.broker.close()
        await self.aredis.aclose()  # type: ignore[attr-defined]
        self.redis.close()

    async def ready(self) -> dict[str, str]:
        """What /readyz reports: each dependency "ok" or why not."""
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(self.aredis.ping(), 2)
            checks["redis"] = "ok"
        except Exception as exc:  # any failure is "not ready", said in the body
            checks["redis"] = f"unreachable: {type(exc).__name__}"
        try:
            await asyncio.wait_for(self.broker.connect(), 5)
            checks["rabbitmq"] = "ok"
        except (WarrenError, asyncio.TimeoutError) as exc:
            checks["rabbitmq"] = f"unreachable: {exc}"
        return checks


async def healthz(_request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def readyz(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    checks = await gw.ready()
    ok = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if ok else "unavailable", **checks}
    return Response(orjson.dumps(body), 200 if ok else 503, media_type="application/json")


def routes() -> list[BaseRoute]:
    from gateway import (
        aliases_api,
        config_api,
        console_api,
        functions_api,
        invoke_api,
        mappings_api,
        metrics_api,
        urls_api,
    )

    # Starlette tries routes in order: the hot ones first (Invoke, health). Function URLs do
    # not come here: GatewayApp answers them before Starlette.
    found: list[BaseRoute] = [
        *invoke_api.ROUTES,
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
    ]
    for module in (functions_api, aliases_api, config_api, mappings_api, urls_api, metrics_api,
                   console_api):
        found.extend(module.ROUTES)
    return found


class GatewayApp:
    """The ASGI app: function URL requests go straight to `url_app`; the API, health and the
    lifespan to Starlette."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_url_request(scope):
            await self.app(scope, receive, send)
            return
        try:
            await url_app(self.app.state.gateway, scope, receive, send)
        except Exception:  # a bug: a 500, logged, and the server goes on
            log.exception("function URL request failed")
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b""})


def create_app(settings: Settings, options: GatewayOptions) -> GatewayApp:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway = Gateway(settings, options)
        app.state.gateway = gateway
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    return GatewayApp(Starlette(routes=routes(), lifespan=lifespan))


def create_app_from_environ() -> GatewayApp:
    """The factory each `--workers` process calls: settings from the environment it inherits."""
    return create_app(Settings.from_environ(os.environ), GatewayOptions.from_environ(os.environ))
