"""The router process: admit async invocations under concurrency, forward them to the workers.

Consume the durable async queue; per batch of deliveries, one Redis round trip admits what the
limits allow; admitted invocations are forwarded to the work queue in chunks, the rest wait in a
delay queue that dead-letters back (a throttle is never an attempt, nothing is dropped); only
after those publishes are confirmed is the batch acked upstream.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable

from broker_adapters.deadletter import dead_letter
from router.admission.semaphore import Semaphore
from router.destination import DestinationSet
from router.metrics import RouterMetrics
from router.record import EVENT_AGE_EXCEEDED, RETRIES_EXHAUSTED, invocation_record
from router.retry import RetryPolicy
from warren.errors import DecodeError, Unavailable
from warren.invocation import Invocation, decode_chunk, encode_chunk
from warren.keys import DEFAULT_POOL
from warren.observe.metrics import Registry
from warren.ports import Broker, Delivery
from warren.store.redis import redis_errors

log = logging.getLogger("warren.router")


class Router:
    """One competing consumer of the async queue; run several for availability."""

    def __init__(
        self,
        connect: Callable[[], Broker],
        semaphore: Semaphore,
        destinations: DestinationSet,
        policy: RetryPolicy,
        *,
        pool: str = DEFAULT_POOL,
        prefetch: int = 500,
        max_chunk: int = 100,
        metrics: RouterMetrics | None = None,
    ) -> None:
        self._connect = connect
        self.semaphore = semaphore
        self.destinations = destinations
        self.policy = policy
        self.pool = pool
        self.prefetch = prefetch
        self.max_chunk = max_chunk
        self.metrics = metrics or RouterMetrics(Registry())  # counted even when not served
        self._batch: list[Delivery] = []
        self.forwarded = 0
        self.deferred = 0

    def run(self, stop: threading.Event) -> None:
        """Route until `stop` is set; reconnect after a broker outage (unacked work returns)."""
        while not stop.is_set():
            try:
                backbone = self._connect()
            except Unavailable as exc:
                log.warning("%s; retrying in 1 s", exc)
                stop.wait(1.0)
                continue
            try:
                with redis_errors("admission"):
                    self._serve(backbone, stop)
            except Unavailable as exc:
                # Nothing of the current batch was acked: closing the connection requeues it.
                log.warning("%s; reconnecting", exc)
                self._batch.clear()
                stop.wait(0.5)
            finally:
                backbone.close()

    def _serve(self, backbone: Broker, stop: threading.Event) -> None:
        backbone.declare(self.pool)
        backbone.declare_delay(self._throttle_ms)
        backbone.consume(backbone.keys.async_queue, self._on_delivery, self.prefetch)
        while not stop.is_set():
            backbone.process(0.2)
            if self._batch:
                batch, self._batch = self._batch, []
                self.route(backbone, batch)

    def _on_delivery(self, delivery: Delivery) -> None:
        self._batch.append(delivery)

    @property
    def _throttle_ms(self) -> int:
        return int(self.policy.throttle_delay_s * 1000)

    def route(self, backbone: Broker, batch: list[Delivery]) -> None:
        """Admit, forward, defer or give up every invocation of `batch`, then ack it."""
        by_function: dict[str, list[Invocation]] = defaultdict(list)
        for delivery in batch:
            try:
                invocations = decode_chunk(delivery.body)
            except DecodeError as exc:
                dead_letter(backbone, delivery, backbone.keys.async_queue, str(exc))
                self.metrics.dead_lettered(backbone.keys.async_queue)
                continue
            for inv in invocations:
                if self.policy.expired(inv):
                    self._give_up(inv, EVENT_AGE_EXCEEDED)
                else:
                    by_function[inv.spec.name].append(inv)

        requests = [
            (name, [inv.lease_id for inv in invs], max(inv.spec.timeout_s for inv in invs))
            for name, invs in by_function.items()
        ]
        grants = self.semaphore.acquire_many(requests) if requests else []
        admitted: list[Invocation] = []
        deferred: list[Invocation] = []
        for (name, _ids, _t), grant in zip(requests, grants, strict=True):
            invs = by_function[name]
            taken = set(grant.admitted)
            for index, inv in enumerate(invs):
                if index in taken:
                    admitted.append(inv.leased(grant.key, grant.expires))
                elif grant.limit == 0:
                    # Reserved concurrency 0: the function is disabled; no retries (Lambda).
                    self._give_up(inv, RETRIES_EXHAUSTED)
                else:
                    deferred.append(inv)

        self.metrics.routed(by_function, deferred)
        by_pool: dict[str, list[Invocation]] = defaultdict(list)
        for inv in admitted:
            by_pool[inv.spec.pool].append(inv)
        for pool, invs in by_pool.items():
            backbone.declare(pool)  # once per pool and connection
            backbone.publish_many(backbone.keys.work_queue(pool), self._chunks(invs))
        if deferred:
            delay_queue = backbone.declare_delay(self._throttle_ms)
            backbone.publish_many(delay_queue, self._chunks(deferred))
        self.forwarded += len(admitted)
        self.deferred += len(deferred)
        backbone.ack(batch[-1].tag, multiple=True)

    def _chunks(self, invocations: list[Invocation]) -> list[bytes]:
        size = self.max_chunk
        return [encode_chunk(invocations[i : i + size]) for i in range(0, len(invocations), size)]

    def _give_up(self, inv: Invocation, condition: str) -> None:
        uri = inv.spec.async_config.on_failure
        log.info("giving up %s (%s, %s)", inv.request_id, inv.spec.name, condition)
        self.metrics.gave_up(inv, condition)
        if uri:
            record = invocation_record(inv, condition, invoke_count=inv.attempt - 1)
            self.destinations.send(uri, record)
