"""`--metrics-port` for the long-running processes: their registry, readiness and probe server."""

from __future__ import annotations

from collections.abc import Callable

import click
import redis

from warren.errors import ConfigError, StoreUnavailable
from warren.observe.metrics import Registry
from warren.observe.probe import ProbeServer, reachable, serve
from warren.settings import Settings
from warren.store.redis import redis_errors

metrics_port_option = click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Serve /metrics, /healthz and /readyz on this port (0: off).",
)


def dependencies(settings: Settings) -> Callable[[], list[str]]:
    """A readiness check: Redis answers PING and the broker accepts a connection."""
    client: redis.Redis[bytes] = redis.Redis.from_url(
        settings.redis.url, socket_connect_timeout=1.0, socket_timeout=1.0
    )

    def missing() -> list[str]:
        out = []
        try:
            with redis_errors("readiness", client):
                client.ping()
        except StoreUnavailable as exc:
            out.append(str(exc))
        if not reachable(settings.amqp.host, settings.amqp.port):
            out.append(f"RabbitMQ at {settings.amqp.host}:{settings.amqp.port} does not answer")
        return out

    return missing


def start(
    port: int, registry: Registry, ready: Callable[[], list[str]]
) -> ProbeServer | None:
    try:
        return serve(port, registry, ready)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on --metrics-port {port}: {exc}") from None
