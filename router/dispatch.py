"""Invoking a function: sync at the edge (admit, publish, await the direct reply), async durably."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, cast

import redis

from broker_adapters.amqp import Backbone
from router.admission.parking import LeaseParking, ParkedLease
from router.admission.semaphore import Semaphore
from router.syncwait import RETURNED, LaneCall, Started, amqp_reply, redis_reply
from router.workerwatch import NO_WORKER, WorkerWatch
from warren.aws import new_request_id
from warren.codec import dumps_json, loads_json
from warren.errors import (
    InvalidParameter,
    NoLiveWorker,
    StoreUnavailable,
    TooManyRequests,
    Unavailable,
)
from warren.function import LATEST, FunctionSpec, is_version
from warren.invocation import (
    DRY_RUN,
    EVENT,
    INVOCATION_TYPES,
    REQUEST_RESPONSE,
    Invocation,
    InvocationResult,
    encode_chunk,
    encode_single,
)
from warren.keys import DEFAULT_POOL, Keys
from warren.ports import Delivery
from warren.settings import Settings
from warren.store.redis import dedicated, redis_errors, sharing
from warren.store.registry import Registry
from warren.store.synclane import envelope, push_commands
from warren.store.throttles import ThrottleStore

MAX_SYNC_PAYLOAD = 6 * 1024 * 1024
MAX_ASYNC_PAYLOAD = 1024 * 1024
SUBMIT_WINDOW = 10  # chunks in flight before their confirms are awaited
IDLE_CHECK_S = 1.0  # an idle broker connection may be closed: checked before use after this


def event_bytes(payload: Any) -> bytes:
    """The event as JSON bytes: text/bytes must already be JSON (Lambda's 400 otherwise)."""
    if payload is None:
        return b"{}"
    if isinstance(payload, (bytes, bytearray, memoryview, str)):
        raw = payload.encode() if isinstance(payload, str) else bytes(payload)
        try:
            loads_json(raw)
        except Exception:
            raise InvalidParameter(
                "InvalidRequestContentException: the payload is not valid JSON"
            ) from None
        return raw
    try:
        return dumps_json(payload)
    except TypeError as exc:
        raise InvalidParameter(f"the payload cannot be encoded as JSON: {exc}") from None


class Dispatcher:
    """The one sync/async dispatcher: what `Client.invoke` and the mappings' batch invokes use.

    One per caller, used from one thread at a time.

    Sync (`RequestResponse`): the caller acquires the concurrency lease itself (429 at once over
    the limit), publishes straight to the work queue with reply-to = direct reply-to, and waits
    for the worker's reply (or, with `reply="redis"`, pops it from a Redis list).
    Async (`Event`): published durably to the router's queue; the 202 is returned only after
    RabbitMQ confirmed the message.
    """

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        redis_client: redis.Redis[bytes],
        *,
        pool: str = DEFAULT_POOL,
        queue_wait_s: float = 30.0,
        reply: str | None = None,
        lane: str | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.keys = Keys(settings.prefix)
        self.pool = pool
        self.queue_wait_s = queue_wait_s
        # Where sync requests go: "redis" (the pool's list, store/synclane.py; the reply on a
        # Redis list) or "amqp" (RabbitMQ's lane; the reply by direct reply-to ("amqp") or on
        # a Redis list ("redis")).
        self.lane = lane or settings.sync_lane
        self.reply = reply or settings.sync_reply
        self._redis = redis_client
        self._semaphore: Semaphore | None = None
        self._backbone: Backbone | None = None
        self._replies: dict[str, bytes] = {}
        self._awaiting: str | None = None
        self._pickers: dict[tuple[str, str | None], tuple[float, Any]] = {}
        self._finished: dict[str, list[str]] = {}
        self.spec_ttl_s = 1.0
        self._parking: LeaseParking | None = None
        self._used_at = 0.0

    @property
    def semaphore(self) -> Semaphore:
        """Admission on a Redis connection of its own (connected on first use).

        A sync call makes one Redis call; on a dedicated connection it skips the pool's
        checkout and its liveness probe, which cost about a tenth of that call here.
        """
        if self._semaphore is None:
            client = dedicated(self._redis)
            self._semaphore = Semaphore(
                client,
                self.settings.prefix,
                self.settings.account_concurrency,
                self.registry.reservations,
            )
        return self._semaphore

    @property
    def parking(self) -> LeaseParking:
        """Sync leases kept between calls (admission/parking.py), on a connection of its own."""
        if self._parking is None:
            client = sharing(self._redis)
            self._parking = LeaseParking(client, self.settings.sync_lease_idle_s)
        return self._parking

    @property
    def backbone(self) -> Backbone:
        now, last, self._used_at = time.monotonic(), self._used_at, time.monotonic()
        if self._backbone is not None and now - last > IDLE_CHECK_S and not self._backbone.alive():
            self._backbone.close()
            self._backbone = None
        if self._backbone is None or not self._backbone.is_open:
            backbone = Backbone(self.settings.amqp, self.keys, name="warren-invoker")
            backbone.declare(self.pool)
            backbone.consume_replies(self._on_reply)
            self._backbone = backbone
        return self._backbone

    def _on_reply(self, delivery: Delivery) -> None:
        # Only the awaited call's reply is kept: a late reply to a call that timed out is
        # dropped instead of piling up.
        if delivery.correlation_id and delivery.correlation_id == self._awaiting:
            self._replies[delivery.correlation_id] = delivery.body

    # -- public -------------------------------------------------------------------------------
    def invoke(
        self,
        name: str,
        payload: Any = None,
        qualifier: str | None = None,
        invocation_type: str = REQUEST_RESPONSE,
        log_tail: bool = False,
    ) -> InvocationResult:
        if invocation_type not in INVOCATION_TYPES:
            raise InvalidParameter(
                f"invocation type {invocation_type!r} is invalid: use one of "
                + ", ".join(INVOCATION_TYPES)
            )
        event = event_bytes(payload)
        spec = self._picker(name, qualifier)()
        if invocation_type == DRY_RUN:
            return InvocationResult(204, executed_version=spec.version)
        if invocation_type == EVENT:
            return self.invoke_many(name, [event], qualifier=qualifier)[0]
        if len(event) > MAX_SYNC_PAYLOAD:
            raise InvalidParameter("RequestTooLargeException: a sync payload is at most 6 MB")
        return cast(InvocationResult, self._begin(spec, event, log_tail).result(None))

    def invoke_many(
        self,
        name: str,
        payloads: Iterable[Any],
        qualifier: str | None = None,
        invocation_type: str = EVENT,
        chunk_size: int = 100,
    ) -> list[InvocationResult]:
        """Submit many `Event` invocations, `chunk_size` per message, each chunk confirmed.

        Every returned 202 is backed by a broker confirm of the chunk that carries it.
        """
        if invocation_type == DRY_RUN:
            spec = self.registry.resolve(name, qualifier)
            return [InvocationResult(204, executed_version=spec.version) for _ in payloads]
        if invocation_type != EVENT:
            raise InvalidParameter("invoke_many submits Event (or DryRun) invocations only")
        pick = self._picker(name, qualifier)
        results: list[InvocationResult] = []
        window: list[list[Invocation]] = []
        chunk: list[Invocation] = []
        for payload in payloads:
            event = event_bytes(payload)
            if len(event) > MAX_ASYNC_PAYLOAD:
                raise InvalidParameter("RequestTooLargeException: an async payload is at most 1 MB")
            chunk.append(Invocation(new_request_id(), pick(), event, EVENT))
            if len(chunk) >= chunk_size:
                window.append(chunk)
                chunk = []
                if len(window) >= SUBMIT_WINDOW:
                    results.extend(self._submit(window))
                    window = []
        if chunk:
            window.append(chunk)
        if window:
            results.extend(self._submit(window))
        return results

    def close(self) -> None:
        if self._parking is not None:
            self._parking.close()
            self._parking = None
        if self._semaphore is not None:
            self._semaphore.redis.close()
            self._semaphore = None
        if self._backbone is not None:
            self._backbone.close()
            self._backbone = None

    # -- internals ----------------------------------------------------------------------------
    def _submit(self, chunks: Sequence[Sequence[Invocation]]) -> list[InvocationResult]:
        """Publish chunks with pipelined confirms; 202s only once all of them are confirmed."""
        bodies = [encode_chunk(chunk) for chunk in chunks]
        self.backbone.publish_many(self.keys.async_queue, bodies)
        return [
            InvocationResult(202, executed_version=inv.spec.version, request_id=inv.request_id)
            for chunk in chunks
            for inv in chunk
        ]

    def _picker(self, name: str, qualifier: str | None) -> Any:
        """A function drawing the spec one invocation runs, cached for `spec_ttl_s`.

        The registry is read at most once a second per target (a change takes effect within
        that, as Lambda's own updates are eventually consistent); an alias's weighted version
        is drawn per invocation.
        """
        now = time.monotonic()
        cached = self._pickers.get((name, qualifier))
        if cached is not None and cached[0] > now:
            return cached[1]
        picker = self._resolver(name, qualifier)
        self._pickers[(name, qualifier)] = (now + self.spec_ttl_s, picker)
        return picker

    def _resolver(self, name: str, qualifier: str | None) -> Any:
        if qualifier is None or qualifier == LATEST or is_version(qualifier):
            spec = self.registry.resolve(name, qualifier)
            return lambda: spec
        alias = self.registry.get_alias(name, qualifier)
        primary = self.registry.get_function(name, alias.version)
        extras = [(self.registry.get_function(name, v), w) for v, w in alias.weights.items()]

        def pick() -> FunctionSpec:
            for spec, weight in extras:
                if random.random() < weight:
                    return spec
            return primary

        return pick

    def start(self, name: str, payload: Any = None,
              qualifier: str | None = None) -> Started:
        """A RequestResponse invoke begun and not awaited: `Started.result` takes its reply,
        so the calling thread can do other work meanwhile (a mapping's poller reads ahead).
        On RabbitMQ's lane the call is made here, whole."""
        event = event_bytes(payload)
        if len(event) > MAX_SYNC_PAYLOAD:
            raise InvalidParameter("RequestTooLargeException: a sync payload is at most 6 MB")
        return self._begin(self._picker(name, qualifier)(), event, False)

    defers_calls = property(lambda self: self.lane == "redis")

    def _begin(self, spec: FunctionSpec, event: bytes, log_tail: bool) -> Started:
        request_id = new_request_id()
        invocation = Invocation(request_id, spec, event, REQUEST_RESPONSE, log_tail=log_tail)
        wait_s = spec.timeout_s + self.queue_wait_s
        watch = WorkerWatch(self._redis, self.settings.prefix, spec.pool)
        if self.lane != "redis":
            invocation, parked, reply = self._call_amqp(invocation, wait_s, watch)
            return Started(lambda got: self._end(invocation, parked, got), reply=reply)
        invocation, parked = self._admit(invocation, wait_s)
        request = envelope(*encode_single(invocation), time.time() + wait_s)
        call = LaneCall(self.semaphore.redis, push_commands(self.keys, spec.pool, request),
                        self.keys.reply(request_id), watch, wait_s, self._redis,
                        ("LREM", self.keys.sync_lane(spec.pool), 1, request))
        return Started(lambda got: self._end(invocation, parked, got), call)

    def _end(self, invocation: Invocation, parked: ParkedLease | None,
             reply: bytes | None) -> InvocationResult:
        spec = invocation.spec
        worker = f"`warren worker{'' if spec.pool == DEFAULT_POOL else ' --pool ' + spec.pool}`"
        if reply is NO_WORKER:
            raise NoLiveWorker(
                f"no live worker serves pool {spec.pool!r} of {spec.name} (no heartbeat): start "
                f"{worker} for this fleet"
            )
        if reply is RETURNED:
            raise Unavailable(
                f"RabbitMQ had no queue for {spec.name}'s request (the broker restarted or lost "
                "a node); declared again: retry the call"
            )
        if reply is None:
            # A held lease is neither parked nor released: the call may still be running
            # somewhere, so it stays counted until its TTL ends.
            raise Unavailable(
                f"no worker answered {spec.name} within "
                f"{spec.timeout_s + self.queue_wait_s:.0f} s (is a {worker} running "
                "for this fleet?)"
            )
        if parked is not None:
            self.parking.park(spec.name, replace(parked, idle_since=time.monotonic()))
        else:
            # The worker releases the lease right after replying; we hold the reply, so the
            # next acquire for this function releases it too, in the same Lua call (no race).
            self._finished.setdefault(spec.name, []).append(invocation.lease_id)
        return InvocationResult.decode(reply)

    def _call_amqp(
        self, invocation: Invocation, wait_s: float, watch: WorkerWatch
    ) -> tuple[Invocation, ParkedLease | None, bytes | None]:
        """The request on RabbitMQ's sync lane; the reply by direct reply-to or Redis."""
        spec, request_id = invocation.spec, invocation.request_id
        backbone = self.backbone  # connect first: a lease is never taken for a call that can't go
        backbone.declare(spec.pool)  # once per pool and connection: the queue must exist
        invocation, parked = self._admit(invocation, wait_s)
        self._awaiting = request_id
        body, expiration_ms = encode_chunk([invocation]), int(wait_s * 1000)
        queue = self.keys.sync_queue(spec.pool)
        if self.reply == "redis":
            key = self.keys.reply(request_id)
            backbone.request(queue, body, request_id, expiration_ms, self.keys.reply_to(request_id))
            reply = redis_reply(backbone, self.semaphore.redis, key, watch, wait_s, self._redis,
                                run_s=spec.timeout_s + 1)
        else:
            backbone.request(queue, body, request_id, expiration_ms)
            reply = amqp_reply(backbone, request_id, self._replies, watch, wait_s)
        return invocation, parked, reply

    def _admit(
        self, invocation: Invocation, wait_s: float
    ) -> tuple[Invocation, ParkedLease | None]:
        """The invocation under a lease: this caller's parked one, or a new one (429 if none).

        Returns the lease to park again after the call when this caller keeps it (see
        router/admission/parking.py), else None and the worker releases it.
        """
        name = invocation.spec.name
        now = time.monotonic()
        parked = self.parking.take(name) if self.parking.enabled else None
        if parked is not None and parked.usable_for(wait_s, now):
            return (
                replace(
                    invocation,
                    lease_key=parked.key,
                    lease_expires=parked.expires,
                    held_lease=parked.lease_id,
                ),
                parked,
            )
        finished = self._finished.pop(name, [])
        lease_id = invocation.lease_id
        if parked is not None:  # too close to its expiry: renew it under the same id
            lease_id = parked.lease_id
        with redis_errors("admission", self._redis):
            grant = self.semaphore.acquire(name, [lease_id], wait_s, finished)
        if not grant.admitted:
            self._count_throttle(name)
            raise TooManyRequests(
                f"TooManyRequestsException: Rate Exceeded. (Reason: {grant.reason}, "
                f"concurrency limit {grant.limit})",
                reason=grant.reason,
            )
        invocation = invocation.leased(grant.key, grant.expires)
        if not self.parking.enabled or grant.in_use >= grant.limit:
            return invocation, None  # no room to spare: the worker gives it back at once
        ttl_s = self.semaphore.ttl_s(wait_s)
        lease = ParkedLease(grant.key, lease_id, grant.expires, now + ttl_s, now)
        return replace(invocation, held_lease=lease_id), lease

    def _count_throttle(self, name: str) -> None:
        # Counted for the fleet's metrics; a 429 must not turn into an outage error.
        try:
            with redis_errors("counting a throttle", self._redis):
                ThrottleStore(self._redis, self.settings.prefix).add(name, "sync")
        except StoreUnavailable:
            pass
