"""Dead-lettering: a message no process can decode goes to the dead queue with its reason."""

from __future__ import annotations

import time

from warren.ports import Broker, Delivery


def dead_letter(backbone: Broker, delivery: Delivery, queue: str, reason: str) -> None:
    """Publish the raw bytes with the reason in headers (confirmed); the caller then acks."""
    headers = {
        "x-warren-reason": reason[:1000],
        "x-warren-queue": queue,
        "x-warren-time": int(time.time() * 1000),
    }
    backbone.publish(backbone.keys.dead_queue, delivery.body, headers=headers, confirm=True)
