"""Finishing a chunk after its runs, and settling it on the link that took it (worker.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from warren.errors import Unavailable, WarrenError
from warren.store.redis import redis_errors
from workers.completion import Chunk, Completion
from workers.fence import claim
from workers.slot import Link, Slot

log = logging.getLogger("warren.worker")

HOLD_MAX_DELAY_S = 5.0  # the longest pause between attempts to finish a held chunk
DRAIN_HOLD_S = 30.0  # a draining worker gives a chunk it cannot finish back after this
ACK, REQUEUE, DROP, FORGET = "ack", "requeue", "drop", "forget"  # how a delivery is settled


class Finishing:
    """The worker's finishing steps (a part of Worker, kept in a module of its own)."""

    completion: Completion
    completed: int
    _lock: threading.Lock
    _stop: threading.Event
    _taken: set[bytes]

    def _drop_link(self, slot: Slot) -> None:
        raise NotImplementedError

    def _open_link(self, slot: Slot, consume: bool = True) -> Link:
        raise NotImplementedError

    def _claim(self, slot: Slot, chunk: Chunk, link: Link | None) -> bool:
        """Take a fencing token for a redelivered chunk before running it (workers/fence.py);
        False if its connection died meanwhile (the broker has it back)."""

        def attempt() -> bool:
            with redis_errors("taking over a redelivered chunk"):
                chunk.token = claim(self.completion.redis, chunk.fence)
            return True

        return bool(self._hold(slot, chunk, link, "take over a redelivered chunk", attempt))

    def _finish(self, slot: Slot, chunk: Chunk, link: Link | None) -> None:
        """Finish, then ack on the link that took the chunk.

        A chunk that cannot be finished is held, not requeued: requeueing it would have this
        worker (or another) take it and run every handler again, in a loop for as long as the
        fault lasts. The slot retries with a backoff and takes no new work meanwhile; only if
        the connection that took the chunk dies does the broker requeue it, and then this
        run's result is dropped (the redelivery runs it again, under a new fencing token).
        A request off the Redis lane (`link` None) needs no broker: it is finished in Redis.
        """

        def attempt() -> bool:
            with redis_errors("finishing a chunk"):
                if link is not None:
                    return self.completion.finish(chunk, self._publisher(slot).backbone)
                lane = slot.lane if not self._stop.is_set() else None
                execute = lane.finisher() if lane is not None else None
                return self.completion.finish(chunk, None, execute)

        salvage = lambda: self.completion.salvage(chunk)  # noqa: E731
        finished = self._hold(slot, chunk, link, "finish a chunk", attempt, salvage)
        if finished is None:
            return
        if not finished:
            # Another copy of this chunk is someone else's now (the broker redelivered it,
            # or recovered a copy after a crash): ours is discarded, never acked as done.
            log.warning(
                "not finishing chunk %s: another delivery of it took over (this one stalled or "
                "was a duplicate); its result is dropped", chunk.fence,
            )
            self._settle(slot, link, chunk, DROP)
            return
        with self._lock:
            self.completed += len(chunk.invocations)
        self._settle(slot, link, chunk, ACK)

    def _hold(self, slot: Slot, chunk: Chunk, link: Link | None, what: str,
              step: Callable[[], bool],
              lost: Callable[[], None] = lambda: None) -> bool | None:
        """Run `step` until it succeeds, pausing (and servicing this slot's connection) in
        between; one log line per change of reason. None once the chunk is out of our hands:
        its connection died (the broker requeued it), or a drain gave up on it."""
        delay, failing, since = 0.2, "", time.monotonic()
        while True:
            if link is not None and not link.backbone.is_open:
                log.warning(
                    "cannot %s: its connection is gone, so RabbitMQ requeued it (%s)",
                    what, link.backbone.why_closed,
                )
                lost()
                self._settle(slot, link, chunk, FORGET)
                return None
            try:
                result = step()
            except WarrenError as exc:
                reason = str(exc)
                if reason != failing:
                    log.error("cannot %s, holding it (taking no new work): %s", what, reason)
                    failing = reason
                if self._stop.is_set() and time.monotonic() - since > DRAIN_HOLD_S:
                    log.error("draining: giving the chunk back to its queue")
                    self._settle(slot, link, chunk, REQUEUE)
                    return None
                self._pause(slot, delay)
                delay = min(delay * 2, HOLD_MAX_DELAY_S)
                continue
            if failing:
                log.info("could %s again after %.1f s", what, time.monotonic() - since)
            return result

    def _publisher(self, slot: Slot) -> Link:
        """The slot's own link, opened again (without consuming) if its connection broke."""
        if slot.link is None or not slot.link.backbone.is_open:
            self._drop_link(slot)
            slot.link = self._open_link(slot, consume=False)
        return slot.link

    def _pause(self, slot: Slot, seconds: float) -> None:
        link = slot.link
        if link is None or not link.backbone.is_open:
            self._stop.wait(seconds)
            return
        try:
            link.backbone.process(seconds)  # heartbeats go on while the chunk is held
        except Unavailable:
            pass

    def _settle(self, slot: Slot, link: Link | None, chunk: Chunk, how: str) -> None:
        """ACK, REQUEUE, DROP (reject without requeue) or FORGET (the delivery went back with
        its connection) on the link that took the chunk; only its own thread may touch it.
        A request off the Redis lane was settled in its finishing round trip (or stays in its
        taken list, for a live worker to put back once this one is gone)."""
        tag = chunk.delivery.tag
        if link is None:
            with self._lock:
                self._taken.discard(chunk.request)
            return

        def settle() -> None:
            with self._lock:
                link.unacked -= 1
            if how == FORGET:
                return
            try:
                if how == ACK:
                    link.backbone.ack(tag)
                else:
                    link.backbone.nack(tag, requeue=how == REQUEUE)
            except Unavailable as exc:  # the connection died: the broker redelivers it
                log.warning("cannot settle a delivery: %s", exc)

        if link is slot.link or how == FORGET:
            settle()
            return
        try:
            link.backbone.call_soon(settle)
            link.ring()  # its slot may be waiting on its sockets, not in pika
        except Unavailable:
            with self._lock:
                link.unacked -= 1
