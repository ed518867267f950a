"""Lambda's `aws:rmq` record for one AMQP message: properties as Lambda shows them, base64 data."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from pika.spec import BasicProperties


def rmq_message(props: BasicProperties, body: bytes, redelivered: bool) -> dict[str, Any]:
    """One element of `rmqMessagesByQueue["<queue>::<vhost>"]`."""
    return {
        "basicProperties": {
            "contentType": props.content_type,
            "contentEncoding": props.content_encoding,
            "headers": _headers(props.headers) if props.headers else None,
            "deliveryMode": props.delivery_mode,
            "priority": props.priority,
            "correlationId": props.correlation_id,
            "replyTo": props.reply_to,
            "expiration": props.expiration,
            "messageId": props.message_id,
            "timestamp": _java_date(props.timestamp),
            "type": props.type,
            "userId": props.user_id,
            "appId": props.app_id,
            "clusterId": props.cluster_id,
            "bodySize": len(body),
        },
        "redelivered": redelivered,
        "data": base64.b64encode(body).decode("ascii"),
    }


def _headers(value: Any) -> Any:
    """AMQP table values as Lambda shows them: strings as {"bytes": [...]}, the rest as JSON."""
    if isinstance(value, dict):
        return {str(k): _headers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_headers(v) for v in value]
    if isinstance(value, str):
        return {"bytes": list(value.encode())}
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": list(value)}
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return _java_date(int(value.replace(tzinfo=value.tzinfo or timezone.utc).timestamp()))
    return value


def _java_date(stamp: int | None) -> str | None:
    """An AMQP timestamp the way Lambda renders it: "Jan 1, 1970, 12:33:41 AM" (UTC)."""
    if not stamp:
        return None
    moment = datetime.fromtimestamp(stamp, tz=timezone.utc)
    hour = moment.hour % 12 or 12
    return (
        f"{moment.strftime('%b')} {moment.day}, {moment.year}, "
        f"{hour}:{moment.strftime('%M:%S')} {'AM' if moment.hour < 12 else 'PM'}"
    )
