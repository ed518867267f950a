"""The seams the rooms meet through, as Protocols: whoever implements one needs no base class."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from warren.invocation import InvocationResult
from warren.keys import DEFAULT_POOL, Keys


class Pending(Protocol):
    """A sync invoke under way: `result(wait_s)` is its result once there (None until then;
    wait_s None waits), raising what `Dispatcher.invoke` would; `abandon` stops waiting."""

    def result(self, wait_s: float | None) -> InvocationResult | None: ...

    def abandon(self) -> None: ...


class Dispatcher(Protocol):
    """Invokes functions as Lambda's Invoke API does (router.dispatch.Dispatcher is the fleet's).

    One caller thread at a time; `close()` gives back its connections and parked leases.
    """

    def invoke(
        self,
        name: str,
        payload: Any = None,
        qualifier: str | None = None,
        invocation_type: str = "RequestResponse",
        log_tail: bool = False,
    ) -> InvocationResult: ...

    def start(self, name: str, payload: Any = None, qualifier: str | None = None) -> Pending:
        """A RequestResponse invoke begun, its reply taken later (see `defers_calls`)."""
        ...

    @property
    def defers_calls(self) -> bool:
        """Whether `start` returns before the reply (else it made the whole call)."""
        ...

    def invoke_many(
        self,
        name: str,
        payloads: Iterable[Any],
        qualifier: str | None = None,
        invocation_type: str = "Event",
        chunk_size: int = 100,
    ) -> list[InvocationResult]: ...

    def close(self) -> None: ...


class RecordSink(Protocol):
    """Where invocation and batch records go (an on-success or on-failure destination):
    `send` returns once the record is durably stored."""

    uri: str

    def send(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


# ---- the broker: how processes move messages ----------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One message handed to a consumer; ack it by `tag` on the same Broker."""

    tag: int
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    reply_to: str | None = None
    correlation_id: str | None = None
    redelivered: bool = False


class Broker(Protocol):
    """One connection to the fleet's message broker: declare, publish (confirmed), consume.

    broker_adapters.amqp.Backbone is RabbitMQ's; broker_adapters.memory.MemoryBroker is an
    in-process one for tests. Both keep RabbitMQ's semantics: a message is acked or nacked on
    the connection that took it, and whatever a closed connection held unacked is delivered
    again (`redelivered`). Not thread-safe: another thread hands work over with `call_soon`.
    Every failure to talk to the broker raises warren.errors.BrokerUnavailable.
    """

    @property
    def keys(self) -> Keys:
        """The fleet's names (queues are named from its prefix)."""

    @property
    def is_open(self) -> bool:
        """False once the connection, its consuming channel or its consumer is gone."""

    @property
    def why_closed(self) -> str:
        """Why `is_open` is False, for a log line."""

    def alive(self) -> bool:
        """Read what the broker sent (a close, an EOF) and say whether this is still usable."""

    def declare(self, pool: str = DEFAULT_POOL) -> None:
        """The fleet's durable queues for `pool` (idempotent and cheap once done)."""

    def declare_queue(self, queue: str) -> None: ...

    def declare_delay(self, delay_ms: int) -> str:
        """A queue whose messages dead-letter to the async queue after `delay_ms`; its name."""

    def depth(self, queue: str) -> int | None:
        """Messages ready in `queue`, or None when it does not exist."""

    def delete_queue(self, queue: str) -> None: ...

    def get(self, queue: str) -> Delivery | None:
        """Take one message off `queue` (acked at once), or None when it is empty."""

    def publish(
        self,
        queue: str,
        body: bytes,
        *,
        headers: dict[str, Any] | None = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        expiration_ms: int | None = None,
        confirm: bool = True,
    ) -> None:
        """confirm=True: durable, and returns once the broker holds it (BrokerUnavailable if it
        refused or could not route it); confirm=False: fire and forget."""

    def publish_many(
        self, queue: str, bodies: Sequence[bytes], headers: dict[str, Any] | None = None
    ) -> None:
        """Confirmed publishes, one wait for all of them."""

    def consume(self, queue: str, callback: Callable[[Delivery], None], prefetch: int) -> str:
        """Deliver `queue` to `callback` inside `process`, at most `prefetch` unacked; a tag."""

    def consume_replies(self, callback: Callable[[Delivery], None]) -> None:
        """Receive the replies to this connection's `request`s (no acks)."""

    returned: set[str]
    """Correlation ids of requests the broker could not route (their queue was gone)."""

    def request(
        self,
        queue: str,
        body: bytes,
        correlation_id: str,
        expiration_ms: int,
        reply_to: str | None = None,
    ) -> None:
        """Publish a transient request; its delivery's `reply_to` routes a reply back to this
        connection (None), or names the Redis list the worker pushes it onto."""

    def cancel(self, consumer_tag: str) -> None:
        """Take no more deliveries; those taken stay this connection's to settle."""

    def ack(self, tag: int, multiple: bool = False) -> None: ...

    def nack(self, tag: int, requeue: bool = True) -> None: ...

    def process(self, time_limit: float) -> None:
        """Run I/O and callbacks for up to `time_limit` seconds (returns early once some ran)."""

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the thread that owns this connection (safe from any thread)."""

    def fileno(self) -> int | None:
        """The connection's socket, readable when the broker sent something (None: none)."""

    def undispatched(self) -> bool:
        """Whether events were read off the socket that `process` has not run yet."""

    def close(self) -> None: ...
