"""Serving the gateway: bind once, then one uvicorn server per worker process on that socket."""

from __future__ import annotations

import inspect
import logging
import os
import signal
import socket
import sys
from typing import Any

import uvicorn

from gateway.app import GatewayOptions, create_app
from warren.settings import Settings

DEFAULT_PORT = 9600
APP_FACTORY = "gateway.app:create_app_from_environ"

NO_AUTH_WARNING = (
    "warren gateway: WARNING: --auth none: every request is accepted WITHOUT a signature.\n"
    "warren gateway: WARNING: anyone who can reach {endpoint} can create, change, delete\n"
    "warren gateway: WARNING: and invoke functions. Use it on a laptop only; anywhere else use\n"
    "warren gateway: WARNING: --auth sigv4 (the default) with keys from `warren key create`."
)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before any worker starts (so port 0 gets a real port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def endpoint_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def serve(settings: Settings, options: GatewayOptions, host: str, port: int, workers: int) -> None:
    """Run until SIGINT/SIGTERM; uvicorn finishes open requests, then the lifespan closes."""
    sock = bind(host, port)
    endpoint = endpoint_of(sock)
    if options.auth == "none":
        print(NO_AUTH_WARNING.format(endpoint=endpoint), file=sys.stderr, flush=True)
    print(
        f"warren gateway: {endpoint} (auth {options.auth}, {workers} worker"
        f"{'s' if workers > 1 else ''}, prefix {settings.prefix})",
        file=sys.stderr,
        flush=True,
    )
    common = {
        "log_level": "warning",
        "access_log": False,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "timeout_keep_alive": 75,  # as long as SDK clients keep idle connections
    }
    if workers == 1:
        config = uvicorn.Config(create_app(settings, options), **common)  # type: ignore[arg-type]
        # uvicorn re-raises the signal that stopped it once it shut down gracefully, under the
        # handler that was there before: a quiet one makes that a clean exit (status 0).
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _signum, _frame: None)
        uvicorn.Server(config).run(sockets=[sock])
        return
    # Every worker process rebuilds the app from the environment it inherits.
    os.environ.update(
        {
            "WARREN_AMQP_URL": settings.amqp.url,
            "WARREN_REDIS_URL": settings.redis.url,
            "WARREN_PREFIX": settings.prefix,
            **options.to_environ(),
        }
    )
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(APP_FACTORY, factory=True, workers=workers, **common)  # type: ignore[arg-type]
    supervisor: Any = Multiprocess
    kwargs: dict[str, Any] = {"sockets": [sock]}
    if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn before 0.49
        kwargs["target"] = uvicorn.Server(config).run
    supervisor(config, **kwargs).run()


def quiet_libraries() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    logging.getLogger("pika").setLevel(logging.WARNING)
