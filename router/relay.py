"""The topic relay: each subscription's messages become async invocations of its function.

Runs in `warren router` beside the router. It consumes every subscription's queue on one
connection; per batch of deliveries it applies each subscription's filter policy, submits one
`Event` invocation per matching message (SNS's event, one record) and acks only after those
submissions were confirmed. From there the function's async retries, maximum age and
destinations apply as to any async invocation, so a failing subscriber holds up nobody.
Several routers share the queues as competing consumers: each message reaches each
subscription once (again only after a crash before its ack: at-least-once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson

from broker_adapters.deadletter import dead_letter
from router.topics import TopicBroker
from warren import codec
from warren.errors import DecodeError, InvalidParameter, NotFound, Unavailable
from warren.ports import Broker, Delivery, Dispatcher
from warren.store.topics import TopicStore
from warren.topic import MESSAGE_KIND, Subscription, TopicMessage, sns_event

log = logging.getLogger("warren.topics")


class TopicRelay:
    def __init__(
        self,
        connect: Callable[[], Broker],
        bus: Callable[[], TopicBroker],
        store: TopicStore,
        dispatcher: Callable[[], Dispatcher],
        *,
        refresh_s: float = 1.0,
        prefetch: int = 200,
    ) -> None:
        self._connect = connect
        self._bus = bus
        self.store = store
        self._dispatcher_factory = dispatcher
        self._dispatcher: Dispatcher | None = None
        self.refresh_s = refresh_s
        self.prefetch = prefetch
        self._batch: list[tuple[Subscription, Delivery]] = []
        self.relayed = 0
        self.filtered = 0

    def run(self, stop: threading.Event) -> None:
        """Relay until `stop` is set; after an outage reconnect (unacked messages return)."""
        while not stop.is_set():
            try:
                backbone = self._connect()
            except Unavailable as exc:
                log.warning("topic relay: %s; retrying in 1 s", exc)
                stop.wait(1.0)
                continue
            try:
                self._serve(backbone, stop)
            except Unavailable as exc:
                log.warning("topic relay: %s; reconnecting", exc)
                self._batch.clear()
                self._reset_dispatcher()
                stop.wait(0.5)
            finally:
                backbone.close()
        self._reset_dispatcher()

    def _reset_dispatcher(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.close()
            self._dispatcher = None

    def _serve(self, backbone: Broker, stop: threading.Event) -> None:
        consumers: dict[str, tuple[str, Subscription]] = {}
        bus = self._bus()
        try:
            refresh_at = 0.0
            while not stop.is_set():
                if time.monotonic() >= refresh_at:
                    self._refresh(backbone, bus, consumers)
                    refresh_at = time.monotonic() + self.refresh_s
                backbone.process(0.05)
                if self._batch:
                    batch, self._batch = self._batch, []
                    self.relay(backbone, batch)
        finally:
            bus.close()

    def _refresh(self, backbone: Broker, bus: TopicBroker,
                 consumers: dict[str, tuple[str, Subscription]]) -> None:
        """Consume new subscriptions' queues, stop consuming removed ones."""
        current = {s.id: s for s in self.store.all_subscriptions()}
        for sid in set(consumers) - set(current):
            tag, _ = consumers.pop(sid)
            backbone.cancel(tag)
        for sid, subscription in current.items():
            if sid in consumers:
                continue
            bus.subscribe(subscription.topic, sid)  # idempotent: the queue survives a reset

            def on_delivery(delivery: Delivery, sub: Subscription = subscription) -> None:
                self._batch.append((sub, delivery))

            queue = backbone.keys.subscription_queue(subscription.topic, sid)
            consumers[sid] = (backbone.consume(queue, on_delivery, self.prefetch), subscription)

    def relay(self, backbone: Broker, batch: list[tuple[Subscription, Delivery]]) -> None:
        """Submit the matching messages of `batch` as async invocations, then ack it all."""
        groups: dict[str, list[Any]] = defaultdict(list)
        for subscription, delivery in batch:
            try:
                message = TopicMessage.from_dict(codec.decode(delivery.body, MESSAGE_KIND))
            except (DecodeError, TypeError) as exc:
                queue = backbone.keys.subscription_queue(subscription.topic, subscription.id)
                dead_letter(backbone, delivery, queue, f"not a topic message: {exc}")
                continue
            if not subscription.accepts(message.attributes):
                self.filtered += 1
                continue
            # As JSON bytes: a raw subscription's event may be a bare string.
            groups[subscription.function].append(orjson.dumps(sns_event(subscription, message)))
        if groups and self._dispatcher is None:
            self._dispatcher = self._dispatcher_factory()
        for function, events in groups.items():
            name, _, qualifier = function.partition(":")
            assert self._dispatcher is not None
            try:
                self._dispatcher.invoke_many(name, events, qualifier=qualifier or None)
            except (NotFound, InvalidParameter) as exc:
                # The function (or its alias) went away: nothing can run these. Say so.
                log.warning("topic relay: %d message(s) for %s dropped: %s",
                            len(events), function, exc)
                continue
            self.relayed += len(events)
        backbone.ack(batch[-1][1].tag, multiple=True)
