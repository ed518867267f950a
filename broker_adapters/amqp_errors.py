"""How RabbitMQ's failures reach Warren: pika's and the socket's exceptions as one
BrokerUnavailable line, with the URL's password never shown."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from warren.errors import BrokerUnavailable

REPLY_TO = "amq.rabbitmq.reply-to"


def redact(url: str) -> str:
    """The URL (or comma-separated URLs) without passwords, for error messages."""
    if "," in url:
        return ",".join(redact(part) for part in url.split(","))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def broker_errors(url: str) -> Iterator[None]:
    """Map pika's (and the socket's) exceptions to BrokerUnavailable with one clear line."""
    try:
        yield
    except pika.exceptions.UnroutableError as exc:
        raise BrokerUnavailable(
            f"RabbitMQ at {redact(url)} returned an unroutable message: {exc}"
        ) from None
    except (pika.exceptions.AMQPError, AMQPConnectorException, OSError) as exc:
        detail = str(exc) or type(exc).__name__
        raise BrokerUnavailable(f"cannot reach RabbitMQ at {redact(url)}: {detail}") from None
    except ValueError as exc:
        # pika's ioloop raises this when the connection died under a timed wait.
        if "closed before call" not in str(exc):
            raise
        raise BrokerUnavailable(f"lost RabbitMQ at {redact(url)}: {exc}") from None
