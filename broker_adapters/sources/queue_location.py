"""Where a RabbitMQ queue source reads: `amqp://USER:PASS@HOST:PORT/VHOST/QUEUE`, parsed."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import pika

from warren.errors import InvalidParameter

_URI_HINT = "a queue source looks like amqp://USER:PASS@HOST:5672/VHOST/QUEUE (vhost / is %2F)"


@dataclass(frozen=True)
class QueueLocation:
    host: str
    port: int
    vhost: str
    queue: str
    username: str
    password: str
    tls: bool = False

    @classmethod
    def parse(cls, uri: str) -> QueueLocation:
        parts = urlsplit(uri)
        segments = parts.path.split("/")[1:]
        if parts.scheme not in ("amqp", "amqps") or len(segments) != 2 or not all(segments):
            raise InvalidParameter(f"bad source {uri!r}: {_URI_HINT}")
        try:
            port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
        except ValueError:
            raise InvalidParameter(f"bad port in {uri!r}: {_URI_HINT}") from None
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port,
            vhost=unquote(segments[0]),
            queue=unquote(segments[1]),
            username=unquote(parts.username or "guest"),
            password=unquote(parts.password or "guest"),
            tls=parts.scheme == "amqps",
        )

    def parameters(self, heartbeat_s: int) -> pika.ConnectionParameters:
        tls = pika.SSLOptions(ssl.create_default_context()) if self.tls else None
        return pika.ConnectionParameters(
            host=self.host,
            port=self.port,
            virtual_host=self.vhost,
            credentials=pika.PlainCredentials(self.username, self.password),
            heartbeat=heartbeat_s,
            connection_attempts=1,
            socket_timeout=5,
            blocked_connection_timeout=60,
            ssl_options=tls,
        )
