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
from workers.slot import Link, Slot

log = logging.getLogger("warren.worker")

KEEP_EVERY_S = 1.0  # how often the keeper services the connections of running slots
REAP_EVERY_S = 30.0
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
        last_reap = last_prune = time.monotonic()
        self._prune()
        try:
            while any(thread.is_alive() for thread in threads):
                for slot in self._slots:
                    slot.keep()
                if time.monotonic() - last_reap > REAP_EVERY_S:
                    self.executor.pool.reap()
                    last_reap = time.monotonic()
                if time.monotonic() - last_prune > PRUNE_EVERY_S:
                    self._prune()
                    last_prune = time.monotonic()
                stop.wait(KEEP_EVERY_S)
                if stop.is_set():  # draining: slots wake up to cancel their consumers
                    for slot in self._slots:
                        slot.wake()
                    threads[0].join(timeout=0.2)
            log.info("drained; stopping")
        finally:
            self.executor.pool.close()

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
                slot.pending.clear()  # their connection is gone: the broker redelivers them
                self._run_shared(slot) or self._stop.wait(0.05)
                return
            slot.link = self._open_link(slot)
        link = slot.link
        if self._stop.is_set() and not slot.cancelled and link.tag is not None:
            link.backbone.cancel(link.tag)  # take no more work; what was taken still runs
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

    def _open_link(self, slot: Slot) -> Link:
        backbone = self._connect(f"warren-worker-slot-{slot.number}")
        try:
            backbone.declare(self.config.pool)
            link = Link(backbone, backbone.keys.work_queue(self.config.pool))
            link.tag = backbone.consume(link.queue, slot.pending.append, 1)
        except BaseException:
            backbone.close()
            raise
        slot.cancelled = False
        return link

    def _drop_lane(self, slot: Slot) -> None:
        if slot.link is not None:
            slot.link.backbone.close()
            slot.link = None

    def _run_shared(self, slot: Slot) -> bool:
        try:
            job = self._jobs.get_nowait()
        except queue.Empty:
            return False
        self._run(slot, job)
        return True

    def _take(self, slot: Slot, link: Link, delivery: Delivery) -> None:
        try:
            invocations = decode_chunk(delivery.body)
        except DecodeError as exc:
            log.warning("dead-lettering a malformed message: %s", exc)
            dead_letter(link.backbone, delivery, link.queue, str(exc))
            link.backbone.ack(delivery.tag)
            return
        chunk = Chunk(delivery, invocations)
        with self._lock:
            link.unacked += 1
        for index in range(1, len(invocations)):
            self._jobs.put((chunk, index, link))
            with self._lock:
                idle = self._idle.pop() if self._idle else None
            if idle is not None:
                idle.wake()
        self._run(slot, (chunk, 0, link))

    def _run(self, slot: Slot, job: Job) -> None:
        chunk, index, link = job
        with self._lock:
            self.busy += 1
        slot.lock.release()  # the keeper may service this connection while the sandbox runs
        try:
            run = self.executor.run(chunk.invocations[index])
        finally:
            slot.lock.acquire()
            with self._lock:
                self.busy -= 1
        if chunk.done(index, run):
            self._finish(slot, chunk, link)

    def _finish(self, slot: Slot, chunk: Chunk, link: Link) -> None:
        own = slot.link
        try:
            if own is None or not own.backbone.is_open:
                raise Unavailable("this slot's broker connection is closed")
            with redis_errors("finishing a chunk"):
                self.completion.finish(chunk, own.backbone)
        except WarrenError as exc:
            # Nothing was acked: hand the chunk back so it runs again (at-least-once).
            log.error("cannot finish a chunk, requeueing it: %s", exc)
            self._settle(slot, link, chunk.delivery.tag, ack=False)
            if own is None or not own.backbone.is_open:
                raise Unavailable(f"this slot's broker connection is lost: {exc}") from None
            return
        with self._lock:
            self.completed += len(chunk.invocations)
        self._settle(slot, link, chunk.delivery.tag, ack=True)

    def _settle(self, slot: Slot, link: Link, tag: int, ack: bool) -> None:
        """Ack (or nack) on the link that took the chunk; only its own thread may touch it."""

        def settle() -> None:
            with self._lock:
                link.unacked -= 1
            try:
                link.backbone.ack(tag) if ack else link.backbone.nack(tag, requeue=True)
            except Unavailable as exc:  # the connection died: the broker redelivers it
                log.warning("cannot settle a delivery: %s", exc)

        if link is slot.link:
            settle()
            return
        try:
            link.backbone.call_soon(settle)
        except Unavailable:
            with self._lock:
                link.unacked -= 1
