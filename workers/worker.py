"""The worker daemon: slot threads consume invocation chunks, run, finish, then ack."""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker_adapters.deadletter import dead_letter
from warren.errors import DecodeError, Unavailable, WarrenError
from warren.invocation import decode_chunk
from warren.keys import DEFAULT_POOL
from warren.ports import Broker, Delivery
from warren.store.redis import redis_errors
from workers.codecache import DEFAULT_TTL_S
from workers.completion import Chunk, Completion
from workers.executor import Executor
from workers.fence import claim, fence_key
from workers.keeper import BusyWatch
from workers.slot import Link, Slot

log = logging.getLogger("warren.worker")

KEEP_EVERY_S = 1.0  # how often the keeper services the connections of running slots
WATCH_SLICE_S = 0.1  # the keeper's longest wait on running slots' sockets (and for a stop)
REAP_EVERY_S = 30.0
HOLD_MAX_DELAY_S = 5.0  # the longest pause between attempts to finish a held chunk
DRAIN_HOLD_S = 30.0  # a draining worker gives a chunk it cannot finish back after this
ACK, REQUEUE, DROP, FORGET = "ack", "requeue", "drop", "forget"  # how a delivery is settled
PRUNE_EVERY_S = 600.0  # code cache pruning (workers/codecache.py); also once at start


@dataclass(frozen=True)
class WorkerConfig:
    slots: int = 2
    pool: str = DEFAULT_POOL
    cache_dir: Path = Path("/var/tmp/warren/code")
    cache_ttl_s: float = DEFAULT_TTL_S  # a code bundle unused this long leaves the cache
    max_idle: int = 0  # 0: twice the slots
    idle_s: float = 300.0
    heartbeat_s: float = 2.0
    worker_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


Job = tuple[Chunk, int, Link]  # an invocation of a chunk, and the link that acks the chunk


class Worker:
    """A consumer per slot, prefetch 1 each; SIGTERM (stop) drains and returns.

    Each slot thread consumes the work queue on a connection of its own, so a sync request
    goes from the socket to the sandbox on one thread, and the reply, the finishing Redis round
    trip and the ack leave on that same connection. The first invocation of a chunk runs on
    the slot that took it; the others go to a shared queue that idle slots are woken for. The
    chunk is finished by whichever slot completes its last invocation and acked on the link
    that took it (directly, or through that connection's `call_soon`).
    """

    def __init__(
        self,
        config: WorkerConfig,
        connect: Callable[[str], Broker],
        executor: Executor,
        completion: Completion,
    ) -> None:
        self.config = config
        self._connect = connect
        self.executor = executor
        self.completion = completion
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle: list[Slot] = []
        self._stop = threading.Event()
        self._slots = [Slot(n) for n in range(config.slots)]
        self._watch = BusyWatch()
        self.busy = 0
        self.completed = 0

    def status(self) -> dict[str, Any]:
        return {
            "slots": self.config.slots,
            "busy": self.busy,
            "warm": self.executor.pool.warm,
            "pool": self.config.pool,
            "completed": self.completed,
        }

    def consuming(self) -> int:
        """Slots whose broker connection is open (the worker's /readyz)."""
        return sum(1 for s in self._slots if s.link is not None and s.link.backbone.is_open)

    # -- the main thread: start the slots, keep their connections, reap -----------------------
    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        threads = [
            threading.Thread(target=self._slot_loop, args=(slot,), name=f"slot-{slot.number}")
            for slot in self._slots
        ]
        for thread in threads:
            thread.daemon = True
            thread.start()
        last_reap = last_prune = last_keep = time.monotonic()
        self._prune()
        try:
            while any(thread.is_alive() for thread in threads):
                for slot in self._watch.wait(WATCH_SLICE_S):
                    slot.keep(self._hand_off)
                if time.monotonic() - last_keep < KEEP_EVERY_S and not stop.is_set():
                    continue
                last_keep = time.monotonic()
                for slot in self._slots:
                    slot.keep(self._hand_off)
                if time.monotonic() - last_reap > REAP_EVERY_S:
                    self.executor.pool.reap()
                    last_reap = time.monotonic()
                if time.monotonic() - last_prune > PRUNE_EVERY_S:
                    self._prune()
                    last_prune = time.monotonic()
                if stop.is_set():  # draining: slots wake up to cancel their consumers
                    for slot in self._slots:
                        slot.wake()
                    threads[0].join(timeout=0.2)
            log.info("drained; stopping")
        finally:
            self.executor.pool.close()
            self._watch.close()

    def _prune(self) -> None:
        try:
            self.executor.codes.prune()
        except OSError as exc:
            log.warning("cannot prune the code cache: %s", exc)

    # -- a slot thread --------------------------------------------------------------------------
    def _slot_loop(self, slot: Slot) -> None:
        slot.lock.acquire()  # released only while a sandbox runs (see Slot)
        try:
            while not (self._stop.is_set() and self._drained(slot)):
                try:
                    self._turn(slot)
                except Unavailable as exc:
                    log.warning("%s; reconnecting", exc)
                    self._drop_lane(slot)
                    slot.lock.release()
                    self._stop.wait(0.5)
                    slot.lock.acquire()
            self._drop_lane(slot)
        finally:
            slot.lock.release()

    def _drained(self, slot: Slot) -> bool:
        link = slot.link
        unsettled = link is not None and link.unacked > 0 and link.backbone.is_open
        return not slot.pending and self._jobs.empty() and not unsettled

    def _turn(self, slot: Slot) -> None:
        """One step: take a delivery, or run a shared job, or wait on the connection."""
        if slot.link is None or not slot.link.backbone.is_open:
            self._drop_lane(slot)
            if self._stop.is_set():
                self._run_shared(slot) or self._stop.wait(0.05)
                return
            slot.link = self._open_link(slot)
        link = slot.link
        if not link.tags and not self._stop.is_set():  # a link opened to finish a chunk
            self._consume(slot, link)
        if self._stop.is_set() and not slot.cancelled and link.tags:
            for tag in link.tags:  # take no more work; what was taken still runs
                link.backbone.cancel(tag)
            slot.cancelled = True
        if slot.pending:
            self._take(slot, link, slot.pending.popleft())
            return
        if self._run_shared(slot):
            return
        with self._lock:
            self._idle.append(slot)
        try:
            if self._jobs.empty():
                link.backbone.process(0.5)
        finally:
            with self._lock:
                if slot in self._idle:
                    self._idle.remove(slot)

    def _open_link(self, slot: Slot, consume: bool = True) -> Link:
        backbone = self._connect(f"warren-worker-slot-{slot.number}")
        try:
            backbone.declare(self.config.pool)
            link = Link(backbone, backbone.keys.work_queue(self.config.pool))
            if consume:
                self._consume(slot, link)
        except BaseException:
            backbone.close()
            raise
        slot.cancelled = False
        return link

    def _consume(self, slot: Slot, link: Link) -> None:
        """The pool's work queue and its sync lane, one unacked delivery each (keeper.py)."""
        sync = link.backbone.keys.sync_queue(self.config.pool)
        link.tags = [link.backbone.consume(q, slot.pending.append, 1) for q in (link.queue, sync)]

    def _drop_lane(self, slot: Slot) -> None:
        if slot.link is not None:
            slot.link.backbone.close()
            slot.link = None
        # Deliveries not taken yet went back to the queue with their connection: their tags
        # mean nothing on the next one (acking one there would close its channel).
        slot.pending.clear()

    def _run_shared(self, slot: Slot) -> bool:
        try:
            job = self._jobs.get_nowait()
        except queue.Empty:
            return False
        self._run(slot, job)
        return True

    def _accept(self, link: Link, delivery: Delivery) -> Chunk | None:
        """The delivery as a chunk this link must settle; a malformed one is dead-lettered."""
        try:
            invocations = decode_chunk(delivery.body)
        except DecodeError as exc:
            log.warning("dead-lettering a malformed message: %s", exc)
            dead_letter(link.backbone, delivery, link.queue, str(exc))
            link.backbone.ack(delivery.tag)
            return None
        with self._lock:
            link.unacked += 1
        return Chunk(delivery, invocations, fence=fence_key(self.completion.prefix, invocations))

    def _take(self, slot: Slot, link: Link, delivery: Delivery) -> None:
        chunk = self._accept(link, delivery)
        if chunk is None or (delivery.redelivered and not self._claim(slot, chunk, link)):
            return
        for index in range(1, len(chunk.invocations)):
            self._share((chunk, index, link))
        self._run(slot, (chunk, 0, link))

    def _share(self, job: Job) -> None:
        self._jobs.put(job)
        with self._lock:
            idle = self._idle.pop() if self._idle else None
        if idle is not None:
            idle.wake()

    def _hand_off(self, slot: Slot) -> None:
        """What a running slot was delivered goes to the shared jobs, for the first slot free
        (its lock held: its connection is safe to use). A redelivered chunk stays: taking it
        over needs its fencing token first, on its own slot."""
        link, kept = slot.link, []
        while link is not None and slot.pending:
            delivery = slot.pending.popleft()
            if delivery.redelivered:
                kept.append(delivery)
            elif (chunk := self._accept(link, delivery)) is not None:
                for index in range(len(chunk.invocations)):
                    self._share((chunk, index, link))
        slot.pending.extend(kept)

    def _run(self, slot: Slot, job: Job) -> None:
        chunk, index, link = job
        with self._lock:
            self.busy += 1
        self._watch.running(slot, self._hand_off)
        slot.lock.release()  # the keeper may service this connection while the sandbox runs
        try:
            run = self.executor.run(chunk.invocations[index])
        finally:
            slot.lock.acquire()
            self._watch.done(slot)
            with self._lock:
                self.busy -= 1
        if chunk.done(index, run):
            self._finish(slot, chunk, link)

    def _claim(self, slot: Slot, chunk: Chunk, link: Link) -> bool:
        """Take a fencing token for a redelivered chunk before running it (workers/fence.py);
        False if its connection died meanwhile (the broker has it back)."""

        def attempt() -> bool:
            with redis_errors("taking over a redelivered chunk"):
                chunk.token = claim(self.completion.redis, chunk.fence)
            return True

        return bool(self._hold(slot, chunk, link, "take over a redelivered chunk", attempt))

    def _finish(self, slot: Slot, chunk: Chunk, link: Link) -> None:
        """Finish, then ack on the link that took the chunk.

        A chunk that cannot be finished is held, not requeued: requeueing it would have this
        worker (or another) take it and run every handler again, in a loop for as long as the
        fault lasts. The slot retries with a backoff and takes no new work meanwhile; only if
        the connection that took the chunk dies does the broker requeue it, and then this
        run's result is dropped (the redelivery runs it again, under a new fencing token).
        """

        def attempt() -> bool:
            with redis_errors("finishing a chunk"):
                return self.completion.finish(chunk, self._publisher(slot).backbone)

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
            self._settle(slot, link, chunk.delivery.tag, DROP)
            return
        with self._lock:
            self.completed += len(chunk.invocations)
        self._settle(slot, link, chunk.delivery.tag, ACK)

    def _hold(self, slot: Slot, chunk: Chunk, link: Link, what: str, step: Callable[[], bool],
              lost: Callable[[], None] = lambda: None) -> bool | None:
        """Run `step` until it succeeds, pausing (and servicing this slot's connection) in
        between; one log line per change of reason. None once the chunk is out of our hands:
        its connection died (the broker requeued it), or a drain gave up on it."""
        delay, failing, since = 0.2, "", time.monotonic()
        while True:
            if not link.backbone.is_open:
                log.warning(
                    "cannot %s: its connection is gone, so RabbitMQ requeued it (%s)",
                    what, link.backbone.why_closed,
                )
                lost()
                self._settle(slot, link, chunk.delivery.tag, FORGET)
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
                    self._settle(slot, link, chunk.delivery.tag, REQUEUE)
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
            self._drop_lane(slot)
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

    def _settle(self, slot: Slot, link: Link, tag: int, how: str) -> None:
        """ACK, REQUEUE, DROP (reject without requeue) or FORGET (the delivery went back with
        its connection) on the link that took the chunk; only its own thread may touch it."""

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
        except Unavailable:
            with self._lock:
                link.unacked -= 1
