"""Invoking from the event loop: admit under concurrency, publish, await the reply by request id.

The gateway's counterpart of warren/invoker.py, without a thread per waiting call. Sync
invocations arriving in the same turn of the loop are admitted together (one Lua call per
function, as router/semaphore.py's script takes many lease ids) and published as one chunk per
pool; the worker replies to each under its own request id, and AsyncBroker hands every reply to
the request waiting for it. At concurrency 1 a batch is one invocation, so nothing waits for a
batch to fill.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import redis.asyncio

from broker_adapters.asyncbroker import AsyncBroker
from gateway.parking import LeasePark
from router.admission.parking import ParkedLease
from router.admission.semaphore import ACCOUNT_REASON, ACQUIRE, RESERVED_REASON, Grant
from warren import codec
from warren.errors import InvalidParameter, TooManyRequests, Unavailable, WarrenError
from warren.function import LATEST, FunctionSpec, is_version
from warren.invocation import (
    EVENT,
    REQUEST_RESPONSE,
    RESULT_KIND,
    Invocation,
    encode_chunk,
)
from warren.keys import DEFAULT_POOL, Keys
from warren.settings import Settings
from warren.store.redis import redis_errors
from warren.store.registry import Registry

MAX_SYNC_PAYLOAD = 6 * 1024 * 1024
MAX_ASYNC_PAYLOAD = 1024 * 1024
SPEC_TTL_S = 1.0  # a function's update reaches the gateway within this (Lambda's is eventual too)
LEASE_MARGIN_S = 30.0  # as router/semaphore.py: a dead holder's lease outlives its wait by this


@dataclass(frozen=True)
class Reply:
    """A sync invocation's outcome as the Invoke API returns it."""

    status: int
    payload: bytes
    function_error: str | None
    executed_version: str | None
    log_result: str | None
    request_id: str

    @classmethod
    def decode(cls, data: bytes) -> Reply:
        body = codec.decode(data, RESULT_KIND)
        return cls(
            status=int(body["status"]),
            payload=bytes(body.get("payload") or b""),
            function_error=body.get("error"),
            executed_version=body.get("version"),
            log_result=body.get("log"),
            request_id=str(body.get("id", "")),
        )


@dataclass
class _Waiting:
    invocation: Invocation
    admitted: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    keep: ParkedLease | None = None  # a held lease this call parks once its reply is in


class GatewayInvoker:
    """Invoke from coroutines; one per gateway process (it owns the batching state)."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        client: redis.asyncio.Redis[bytes],
        broker: AsyncBroker,
        *,
        queue_wait_s: float = 30.0,
        max_chunk: int = 16,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.topology = Keys(settings.prefix)
        self.broker = broker
        self.queue_wait_s = queue_wait_s
        self.max_chunk = max_chunk
        self._redis = client
        self._acquire = client.register_script(ACQUIRE)
        self._pickers: dict[tuple[str, str | None], tuple[float, Callable[[], FunctionSpec]]] = {}
        self._reserved: dict[str, int] = {}
        self._reserved_at = -1e9
        self._finished: dict[str, list[str]] = defaultdict(list)
        self._batch: list[_Waiting] = []
        self._flushing = False
        self.park = LeasePark(client, settings.sync_lease_idle_s)

    # -- spec resolution ------------------------------------------------------------------
    async def resolve(self, name: str, qualifier: str | None) -> FunctionSpec:
        """The spec one invocation runs (an alias's weights drawn per call), cached a second."""
        now = time.monotonic()
        cached = self._pickers.get((name, qualifier))
        if cached is None or cached[0] <= now:
            picker = await asyncio.to_thread(self._picker, name, qualifier)
            cached = (now + SPEC_TTL_S, picker)
            if len(self._pickers) > 10_000:
                self._pickers.clear()
            self._pickers[(name, qualifier)] = cached
        return cached[1]()

    def _picker(self, name: str, qualifier: str | None) -> Callable[[], FunctionSpec]:
        if qualifier is None or qualifier == LATEST or is_version(qualifier):
            spec = self.registry.resolve(name, qualifier)
            return lambda: spec
        _alias, primary, extras = self.registry.alias_targets(name, qualifier)

        def pick() -> FunctionSpec:
            for spec, weight in extras:
                if random.random() < weight:
                    return spec
            return primary

        return pick

    # -- invoking -------------------------------------------------------------------------
    async def submit(
        self, spec: FunctionSpec, event: bytes, request_id: str, client_context: bytes | None = None
    ) -> None:
        """An `Event` invocation, durably queued for the router when this returns (202)."""
        if len(event) > MAX_ASYNC_PAYLOAD:
            raise InvalidParameter("RequestTooLargeException: an async payload is at most 1 MB")
        invocation = Invocation(request_id, spec, event, EVENT, client_context=client_context)
        await self.broker.declare(DEFAULT_POOL)
        await self.broker.publish(self.topology.async_queue, [encode_chunk([invocation])])

    async def call(
        self,
        spec: FunctionSpec,
        event: bytes,
        request_id: str,
        *,
        log_tail: bool = False,
        client_context: bytes | None = None,
    ) -> Reply:
        """A `RequestResponse` invocation: its reply, or TooManyRequests / Unavailable."""
        if len(event) > MAX_SYNC_PAYLOAD:
            raise InvalidParameter("RequestTooLargeException: a sync payload is at most 6 MB")
        await self.broker.declare(spec.pool)  # connected first: no lease for a call that can't go
        wait_s = self._wait_s(spec)
        invocation = Invocation(
            request_id, spec, event, REQUEST_RESPONSE, log_tail=log_tail,
            client_context=client_context,
        )
        waiting = _Waiting(invocation)
        parked = self.park.take(spec.name, wait_s) if self.park.enabled else None
        if parked is not None:  # no Redis call: this lease is the gateway's already
            waiting.invocation = replace(
                invocation,
                lease_key=parked.key,
                lease_expires=parked.expires,
                held_lease=parked.lease_id,
            )
            waiting.keep = parked
        reply = self.broker.expect(request_id)
        self._batch.append(waiting)
        if not self._flushing:
            self._flushing = True
            if self.broker.waiting <= 1:
                # The only call in flight: dispatch it now, in this coroutine (a loop turn less).
                await self._flush()
            else:
                # Others are in flight: the flush runs on the loop's next turn, and the calls
                # parsed in this one join its batch.
                asyncio.ensure_future(self._flush())
        try:
            await waiting.admitted
            data = await asyncio.wait_for(reply, wait_s)
        except asyncio.TimeoutError:
            raise Unavailable(
                f"no worker answered {spec.name} within {wait_s:.0f} s (is a `warren worker"
                + ("" if spec.pool == DEFAULT_POOL else f" --pool {spec.pool}")
                + "` running for this fleet?)"
            ) from None
        finally:
            self.broker.forget(request_id)
        if waiting.keep is not None:
            self.park.park(spec.name, replace(waiting.keep, idle_since=time.monotonic()))
        else:
            # The worker releases the lease after replying; the next acquire for this function
            # releases it too, in the same Lua call, so a quick next call never races it.
            self._finished[spec.name].append(waiting.invocation.lease_id)
        return Reply.decode(data)

    def _wait_s(self, spec: FunctionSpec) -> float:
        return spec.timeout_s + self.queue_wait_s

    # -- batching -------------------------------------------------------------------------
    async def _flush(self) -> None:
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                await self._dispatch(batch)
        finally:
            self._flushing = False

    async def _dispatch(self, batch: list[_Waiting]) -> None:
        admitted: list[_Waiting] = []
        try:
            admitted = await self._admit(batch)
            await self._publish(admitted)
        except WarrenError as exc:
            # Leases of calls that did not go out are released by the next acquire.
            for waiting in batch:
                if waiting in admitted or waiting.keep is not None:
                    self._finished[waiting.invocation.spec.name].append(
                        waiting.invocation.lease_id
                    )
            for waiting in batch:
                _fail(waiting.admitted, exc)
            return
        except Exception as exc:  # never leave a caller waiting on a bug
            for waiting in batch:
                _fail(waiting.admitted, Unavailable(f"the gateway failed to dispatch: {exc!r}"))
            raise
        for waiting in admitted:
            if not waiting.admitted.done():
                waiting.admitted.set_result(None)

    async def _admit(self, batch: list[_Waiting]) -> list[_Waiting]:
        leased = [waiting for waiting in batch if waiting.keep is not None]
        by_function: dict[str, list[_Waiting]] = defaultdict(list)
        for waiting in batch:
            if waiting.keep is None:
                by_function[waiting.invocation.spec.name].append(waiting)
        if not by_function:
            return leased
        await self._refresh_reservations()
        with redis_errors("admission", self._redis):  # type: ignore[arg-type]
            if len(by_function) == 1:  # the usual case: no tasks to gather
                ((name, group),) = by_function.items()
                groups = [await self._acquire_for(name, group)]
            else:
                calls = [self._acquire_for(name, group) for name, group in by_function.items()]
                groups = await asyncio.gather(*calls)
        return leased + [waiting for group in groups for waiting in group]

    async def _acquire_for(self, name: str, group: list[_Waiting]) -> list[_Waiting]:
        key, limit, reason = self._limit_for(name)
        ttl_s = max(self._wait_s(w.invocation.spec) for w in group) + LEASE_MARGIN_S
        finished = self._finished.pop(name, [])
        ids = [w.invocation.lease_id for w in group]
        reply = await self._acquire(keys=[key], args=[ttl_s, limit, len(finished), *finished, *ids])
        grant = Grant.from_reply(reply, key, limit, reason)
        chosen = set(grant.admitted)
        # With room to spare under the limit, the gateway keeps these leases after their calls.
        hold = self.park.enabled and grant.in_use < grant.limit
        now = time.monotonic()
        admitted = []
        for index, waiting in enumerate(group):
            if index in chosen:
                invocation = waiting.invocation.leased(grant.key, grant.expires)
                if hold:
                    lease_id = invocation.lease_id
                    invocation = replace(invocation, held_lease=lease_id)
                    waiting.keep = ParkedLease(grant.key, lease_id, grant.expires,
                                               now + ttl_s, now)
                waiting.invocation = invocation
                admitted.append(waiting)
            else:
                _fail(
                    waiting.admitted,
                    TooManyRequests(
                        f"Rate Exceeded. (Reason: {grant.reason}, concurrency limit {grant.limit})",
                        reason=grant.reason,
                    ),
                )
        return admitted

    async def _publish(self, admitted: list[_Waiting]) -> None:
        by_pool: dict[str, list[Invocation]] = defaultdict(list)
        for waiting in admitted:
            by_pool[waiting.invocation.spec.pool].append(waiting.invocation)
        for pool, invocations in by_pool.items():
            queue = self.topology.sync_queue(pool)
            for start in range(0, len(invocations), self.max_chunk):
                chunk = invocations[start : start + self.max_chunk]
                wait_s = max(self._wait_s(inv.spec) for inv in chunk)
                # No correlation id: the worker replies to each invocation under its request id.
                await self.broker.request(
                    queue, encode_chunk(chunk), correlation_id=None,
                    expiration_ms=int(wait_s * 1000),
                )

    async def _refresh_reservations(self) -> None:
        # Read at most once a second, as router/semaphore.py does: `concurrency set` takes
        # effect within that.
        now = time.monotonic()
        if now - self._reserved_at <= 1.0:
            return
        with redis_errors("admission", self._redis):  # type: ignore[arg-type]
            raw = await self._redis.hgetall(self.registry.reservations_key)
        self._reserved = {k.decode(): int(v) for k, v in raw.items()}
        self._reserved_at = now

    def _limit_for(self, name: str) -> tuple[str, int, str]:
        prefix = self.settings.prefix
        if name in self._reserved:
            return f"{prefix}:sem:fn:{name}", self._reserved[name], RESERVED_REASON
        unreserved = self.settings.account_concurrency - sum(self._reserved.values())
        return f"{prefix}:sem:pool", max(0, unreserved), ACCOUNT_REASON


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
