"""The arguments of Warren's durable queues, and what to do about queues an older fleet made.

Quorum queues by default (replicated by Raft across a cluster, acks and publishes on disk
before they are confirmed); `WARREN_QUEUE_TYPE=classic` where quorum queues are not available.
A queue RabbitMQ already has as the other type (a classic queue of a fleet that predates
quorum queues) is refused with PRECONDITION_FAILED; if it is otherwise the same (declaring it
as the other type succeeds) it is used as it is, and reported once with the command that
migrates it. A queue that differs otherwise (a delay queue without its TTL) is an error.
"""

from __future__ import annotations

import logging
import re
from typing import Any

log = logging.getLogger("warren.amqp")

MIGRATE_HINT = (
    "stop the fleet's processes, then run `warren queues migrate` (it moves the messages of "
    "every queue of this prefix whose type differs into a queue of the configured type)"
)
_reported: set[str] = set()
# The sync lane (Keys.sync_queue): transient and classic whatever WARREN_QUEUE_TYPE says. A
# sync request's keeper is its waiting caller, who fails at once if the broker goes; a quorum
# queue's Raft log would add ~2 ms to every call for a durability nobody can use.
SYNC_LANE_ARGS: dict[str, Any] = {"x-queue-type": "classic"}


def queue_arguments(queue_type: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Arguments for a durable queue of `queue_type`, plus `extra` (TTL, dead-lettering)."""
    args = dict(extra or {})
    if queue_type == "quorum":
        args["x-queue-type"] = "quorum"
        if "x-dead-letter-exchange" in args:
            # A delay queue hands its messages on: at-least-once dead-lettering keeps a
            # message until the target queue confirmed it (needs reject-publish overflow).
            args["x-dead-letter-strategy"] = "at-least-once"
            args["x-overflow"] = "reject-publish"
    return args


def other_type(queue_type: str) -> str:
    return "classic" if queue_type == "quorum" else "quorum"


def existing_type(reply_text: str) -> str | None:
    """The type RabbitMQ says a queue has, from its PRECONDITION_FAILED text."""
    match = re.search(r"x-queue-type.*current is '(\w+)'", reply_text)
    if match:
        return match.group(1)
    if "x-queue-type" in reply_text and "none" in reply_text:
        return "classic"
    return None


def report_mismatch(queue: str, wanted: str, reply_text: str) -> None:
    """One warning per queue and process: the queue works, but is not what it should be."""
    if queue in _reported:
        return
    _reported.add(queue)
    current = existing_type(reply_text) or "declared with other arguments"
    log.warning(
        "queue %s is %s, not a %s queue; using it as it is. To migrate it: %s",
        queue, current, wanted, MIGRATE_HINT,
    )
