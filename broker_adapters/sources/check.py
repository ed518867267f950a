"""A mapping's source checked when it is created: refused if malformed, warned if unreachable."""

from __future__ import annotations

import socket
from urllib.parse import parse_qs, urlsplit

from warren.errors import InvalidParameter
from warren.mapping import source_kind
from warren.redact import redact

PROBE_TIMEOUT_S = 2.0


def check_source(uri: str) -> list[str]:
    """Parse `uri` as its poller will (InvalidParameter, one line, no password, if it is bad);
    returns warnings, e.g. an endpoint that does not answer now (it may later)."""
    try:
        endpoint = _parse(uri)
    except InvalidParameter as exc:
        raise InvalidParameter(redact(str(exc))) from None
    if endpoint is None:
        return []
    host, port = endpoint
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return []
    except OSError as exc:
        return [
            f"warning: the source's endpoint {host}:{port} does not answer now "
            f"({exc.strerror or exc}); the mapping will retry until it does"
        ]


def _parse(uri: str) -> tuple[str, int] | None:
    """The endpoint to probe (None: Warren's own services, or none)."""
    kind = source_kind(uri)
    if kind == "schedule":
        from broker_adapters.sources.rate import parse_schedule

        parse_schedule(uri.partition(":")[2])
        return None
    if kind == "stream":
        from broker_adapters.sources.stream import StreamLocation

        StreamLocation.parse(uri)
        parts = urlsplit(uri)
        return (parts.hostname, parts.port or 6379) if parts.hostname else None
    if kind == "queue":
        from broker_adapters.sources.queue_location import QueueLocation

        QueueLocation.parse(uri)
        parts = urlsplit(uri)
        default = 5671 if parts.scheme == "amqps" else 5672
        return (parts.hostname, parts.port or default) if parts.hostname else None
    if kind != "s3":
        return None  # checked when the mapping is prepared (broker_adapters.sources)
    from broker_adapters.sources.bucket import BucketLocation

    BucketLocation.parse(uri).session()  # a profile the poller's machine lacks is refused
    endpoint = parse_qs(urlsplit(uri).query).get("endpoint", [None])[-1]
    if endpoint is None:
        return None
    parts = urlsplit(endpoint)
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
