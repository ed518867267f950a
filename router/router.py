"""The router process: admit async invocations under concurrency, forward them to the workers.

Consume the durable async queue; per batch of deliveries, one Redis round trip admits what the
limits allow; admitted invocations are forwarded to the work queue in chunks. One that finds no
capacity is held in the router first, its message unacked, and asks again every HOLD_RETRY_S:
a burst larger than the limit runs as soon as leases free up instead of sleeping out a delay
while workers sit idle, and held messages count against the prefetch, so the router stops
taking more (up to half of it; the rest is for other functions' events). Once its function has
had no lease granted for `hold_s`, it waits in a delay queue that dead-letters back (Lambda's
backoff; a throttle is never an attempt, nothing is dropped). A message is acked once each of
its invocations was forwarded, deferred or given up, and those publishes were confirmed.
"""

from __future__ import annotations

import logging
import threading
import time
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

HOLD_RETRY_S = 0.02  # how often held invocations ask for capacity again
ASK_MAX = 1000  # invocations of one function asking for leases per round (the rest wait)
AGE_CHECK_S = 0.25  # a held invocation's event age is checked again once it waited this long
Held = tuple[Invocation, int, float]  # an invocation, its message's delivery tag, held since


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
        # Throttled invocations waiting for a lease, and how many of each unacked message's
        # invocations are not forwarded, deferred or given up yet.
        self.hold_s = policy.throttle_delay_s
        self._held: list[Held] = []
        self._open: dict[int, int] = {}
        self._granted: dict[str, float] = {}  # when each function with held work last got a lease
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
                self._held.clear()  # their messages come back with the connection
                self._open.clear()
                self._granted.clear()
                stop.wait(0.5)
            finally:
                backbone.close()

    def _serve(self, backbone: Broker, stop: threading.Event) -> None:
        backbone.declare(self.pool)
        backbone.declare_delay(self._throttle_ms)
        backbone.consume(backbone.keys.async_queue, self._on_delivery, self.prefetch)
        while not stop.is_set():
            backbone.process(HOLD_RETRY_S if self._held else 0.2)
            if self._batch or self._held:
                batch, self._batch = self._batch, []
                self.route(backbone, batch)
        if self._held:  # stopping: what still waits goes to the delay queue, not back
            self.route(backbone, [], hold=False)

    def _on_delivery(self, delivery: Delivery) -> None:
        self._batch.append(delivery)

    @property
    def _throttle_ms(self) -> int:
        return int(self.policy.throttle_delay_s * 1000)

    def route(self, backbone: Broker, batch: list[Delivery], hold: bool = True) -> None:
        """Admit, forward, hold, defer or give up every invocation of `batch` and of those held
        before; ack each message whose invocations are all settled."""
        now, wall, settled = time.monotonic(), time.time(), list[int]()
        arrived = self._unpack(backbone, batch, now, settled)
        fresh: dict[str, list[Invocation]] = defaultdict(list)
        waiting: dict[str, list[Held]] = defaultdict(list)
        for held in [*self._held, *arrived]:  # older first: a lease that frees up goes to them
            waiting[held[0].spec.name].append(held)
        for inv, _, _ in arrived:
            fresh[inv.spec.name].append(inv)
        self._held = []

        later: list[Held] = []  # a burst asks for what a round can grant; the rest waits
        for name in list(waiting):
            group = waiting[name]
            later += group[ASK_MAX:]
            group[:] = [h for h in group[:ASK_MAX] if not self._too_old(h, now, wall, settled)]
            if not group:
                del waiting[name]
        requests = [
            (name, [inv.lease_id for inv, _, _ in held], max(h[0].spec.timeout_s for h in held))
            for name, held in waiting.items()
        ]
        grants = self.semaphore.acquire_many(requests) if requests else []
        admitted: list[Invocation] = []
        deferred: list[Invocation] = []
        for (name, _ids, _t), grant in zip(requests, grants, strict=True):
            taken = set(grant.admitted)
            if taken:
                self._granted[name] = now
            for index, (inv, tag, since) in enumerate(waiting[name]):
                if index in taken:
                    admitted.append(inv.leased(grant.key, grant.expires))
                elif grant.limit == 0:
                    # Reserved concurrency 0: the function is disabled; no retries (Lambda).
                    self._give_up(inv, RETRIES_EXHAUSTED)
                else:
                    self._held.append((inv, tag, since))
                    continue
                settled.append(tag)

        self._held += later
        waited = self._waited(now, hold)
        deferred += [inv for inv, _tag, _since in waited]
        settled += [tag for _inv, tag, _since in waited]
        self.metrics.routed(fresh, deferred)
        by_pool: dict[str, list[Invocation]] = defaultdict(list)
        for inv in admitted:
            by_pool[inv.spec.pool].append(inv)
        for pool, invs in by_pool.items():
            backbone.declare(pool)  # once per pool and connection
            backbone.publish_many(backbone.keys.work_queue(pool), self._chunks(invs))
        self._defer(backbone, deferred)
        self.forwarded += len(admitted)
        self.deferred += len(deferred)
        self._ack(backbone, settled)

    def _too_old(self, held: Held, now: float, wall: float, settled: list[int]) -> bool:
        """A held invocation whose event age ran out while it waited is given up, as after a
        delay queue (Lambda's EventAgeExceeded); one that just arrived was checked then."""
        inv, tag, since = held
        if now - since < AGE_CHECK_S or not self.policy.expired(inv, wall):
            return False
        self._give_up(inv, EVENT_AGE_EXCEEDED)
        settled.append(tag)
        return True

    def _waited(self, now: float, hold: bool) -> list[Held]:
        """Take out of the hold what goes to the delay queue: everything when the router stops;
        what has waited `hold_s` with no lease granted to its function meanwhile (a burst that
        drains stays held; a function stuck at its limit goes to Lambda's backoff); and the
        newest messages' invocations beyond half the prefetch, so other functions' events are
        still taken off the queue."""
        if not hold:
            everything, self._held = self._held, []
            return everything

        def stuck(held: Held) -> bool:
            inv, _tag, since = held
            return now - max(since, self._granted.get(inv.spec.name, since)) >= self.hold_s

        out: list[Held] = []
        kept: list[Held] = []
        for held in self._held:  # one pass: up to half the prefetch's invocations, every round
            (out if stuck(held) else kept).append(held)
        tags = sorted({tag for _inv, tag, _since in kept})
        crowd = set(tags[self.prefetch // 2:])
        out += [h for h in kept if h[1] in crowd]
        self._held = [h for h in kept if h[1] not in crowd]
        if not self._held:
            self._granted.clear()
        return out

    def _unpack(
        self, backbone: Broker, batch: list[Delivery], now: float, settled: list[int]
    ) -> list[Held]:
        """The batch's invocations to admit; what cannot be decoded is dead-lettered and what
        is too old given up (their tags go to `settled`)."""
        arrived: list[Held] = []
        for delivery in batch:
            try:
                invocations = decode_chunk(delivery.body)
            except DecodeError as exc:
                dead_letter(backbone, delivery, backbone.keys.async_queue, str(exc))
                self.metrics.dead_lettered(backbone.keys.async_queue)
                invocations = []
            self._open[delivery.tag] = max(1, len(invocations))
            if not invocations:
                settled.append(delivery.tag)
            for inv in invocations:
                if self.policy.expired(inv):
                    self._give_up(inv, EVENT_AGE_EXCEEDED)
                    settled.append(delivery.tag)
                else:
                    arrived.append((inv, delivery.tag, now))
        return arrived

    def _ack(self, backbone: Broker, settled: list[int]) -> None:
        """Ack the messages `settled` completes (one multiple ack when none is left open)."""
        done = []
        for tag in settled:
            self._open[tag] -= 1
            if self._open[tag] == 0:
                del self._open[tag]
                done.append(tag)
        if done and not self._open:
            backbone.ack(max(done), multiple=True)
            return
        for tag in done:
            backbone.ack(tag)

    def _defer(self, backbone: Broker, deferred: list[Invocation]) -> None:
        """Throttled: waits that double per throttle (Lambda's backoff, up to about 5 minutes),
        grouped per delay queue."""
        by_delay: dict[int, list[Invocation]] = defaultdict(list)
        for inv in deferred:
            by_delay[int(self.policy.throttle_delay_for(inv) * 1000)].append(inv.throttled())
        for delay_ms, invs in by_delay.items():
            backbone.publish_many(backbone.declare_delay(delay_ms), self._chunks(invs))

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
