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
from warren.keys import DEFAULT_POOL, Keys
from warren.ports import Broker, Delivery
from warren.store.redis import redis_errors
from warren.store.synclane import Request, Takers, taker
from workers.codecache import DEFAULT_TTL_S
from workers.completion import Chunk, Completion
from workers.executor import Executor
from workers.fence import fence_key
from workers.finishing import Finishing
from workers.keeper import BusyWatch
from workers.lane import SyncLane, request_chunk
from workers.slot import Link, Slot

log = logging.getLogger("warren.worker")

KEEP_EVERY_S = 1.0  # how often the keeper services the connections of running slots
WATCH_SLICE_S = 0.1  # the keeper's longest wait on running slots' sockets (and for a stop)
REAP_EVERY_S = 30.0
PRUNE_EVERY_S = 600.0  # code cache pruning (workers/codecache.py); also once at start
TAKERS_EVERY_S = 2.0  # requeueing the sync requests of dead workers (store/synclane.py)


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


#: An invocation of a chunk, and the link that acks the chunk (None: off the Redis lane)
Job = tuple[Chunk, int, Link | None]


class Worker(Finishing):
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
        self._keys = Keys(completion.prefix)
        self._takers = Takers(completion.redis, self._keys, config.pool, config.worker_id,
                              config.slots)
        self._taken: set[bytes] = set()  # Redis lane requests taken and not finished
        for slot in self._slots:
            slot.lane = self._lane(slot)
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
        last_reap = last_prune = last_keep = last_takers = time.monotonic()
        self._prune()
        self._check_takers()
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
                if time.monotonic() - last_takers > TAKERS_EVERY_S and not stop.is_set():
                    self._check_takers()
                    last_takers = time.monotonic()
                if stop.is_set():  # draining: slots wake up to cancel their consumers
                    for slot in self._slots:
                        slot.wake()
                    threads[0].join(timeout=0.2)
            self._leave_lane()
            log.info("drained; stopping")
        finally:
            self.executor.pool.close()
            self._watch.close()
            for slot in self._slots:
                slot.close()

    def _lane(self, slot: Slot) -> SyncLane:
        def reclaim() -> int:
            with self._lock:
                running = set(self._taken)
            return self._takers.reclaim(slot.number, running)

        mine = taker(self.config.worker_id, slot.number)
        return SyncLane(self.completion.redis, self._keys, self.config.pool, mine, reclaim)

    def _check_takers(self) -> None:
        try:
            with redis_errors("the sync lane's takers", self.completion.redis):
                moved = self._takers.join_and_requeue()
        except WarrenError as exc:
            log.warning("%s", exc)
            return
        if moved:
            log.warning("put %d sync request(s) of a worker with no heartbeat back on the lane",
                        moved)

    def _leave_lane(self) -> None:
        try:
            with redis_errors("leaving the sync lane", self.completion.redis):
                if not self._takers.leave():
                    log.warning("sync requests are left in this worker's taken lists: a live "
                                "worker puts them back on the lane once its heartbeat is gone")
        except WarrenError as exc:
            log.warning("%s", exc)

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
                    self._drop_link(slot)
                    self._lane_only(slot, 0.5)  # sync requests on Redis need no broker
            # Drained: the broker connection goes first (what it delivered unseen goes back
            # to its queue), then the lane's wait; a request that wait took runs now.
            self._drop_link(slot)
            while slot.lane is not None and (request := slot.lane.cancel()) is not None:
                self._take(slot, None, request)
        finally:
            slot.lock.release()

    def _drained(self, slot: Slot) -> bool:
        """Nothing taken is left to run or settle (the lane's wait is ended after)."""
        link = slot.link
        unsettled = link is not None and link.unacked > 0 and link.backbone.is_open
        return not slot.pending and self._jobs.empty() and not unsettled

    def _turn(self, slot: Slot) -> None:
        """One step: take a delivery, or run a shared job, or wait on the connection."""
        if slot.link is None or not slot.link.backbone.is_open:
            self._drop_link(slot)
            if self._stop.is_set():
                self._run_shared(slot) or self._stop.wait(0.05)
                return
            slot.link = self._open_link(slot)
        link = slot.link
        if not link.tags and not self._stop.is_set():  # a link opened to finish a chunk
            self._consume(slot, link)
        if self._stop.is_set():
            self._take_no_more(slot, link)
        if slot.pending:
            self._take(slot, link, slot.pending.popleft())
            return
        if self._run_shared(slot):
            return
        if slot.lane is not None and not self._stop.is_set():
            slot.lane.arm()
        with self._lock:
            self._idle.append(slot)
        try:
            if self._jobs.empty():
                slot.wait(link, 0.5)
        finally:
            with self._lock:
                if slot in self._idle:
                    self._idle.remove(slot)

    def _take_no_more(self, slot: Slot, link: Link) -> None:
        """Draining: the consumers cancelled and the lane's wait ended; what was taken runs."""
        if not slot.cancelled and link.tags:
            for tag in link.tags:
                link.backbone.cancel(tag)
            slot.cancelled = True
        if slot.lane is not None and (request := slot.lane.cancel()) is not None:
            slot.pending.append(request)

    def _lane_only(self, slot: Slot, seconds: float) -> None:
        """With no broker connection: serve the Redis sync lane (and shared jobs) for
        `seconds`, then let the slot try its broker again."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            lane = slot.lane
            if self._stop.is_set() and lane is not None and (got := lane.cancel()) is not None:
                slot.pending.append(got)
            if slot.pending:
                self._take(slot, None, slot.pending.popleft())
                continue
            if self._run_shared(slot):
                continue
            if self._stop.is_set() or lane is None:
                self._stop.wait(min(left, 0.05))
                continue
            lane.arm()
            slot.wait_lane(left)  # its lock held: the keeper leaves its lane alone

    def _open_link(self, slot: Slot, consume: bool = True) -> Link:
        backbone = self._connect(f"warren-worker-slot-{slot.number}")
        try:
            backbone.declare(self.config.pool)
            link = Link(backbone, backbone.keys.work_queue(self.config.pool))
            link.ring = slot.ring
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

    def _drop_link(self, slot: Slot) -> None:
        if slot.link is not None:
            slot.link.backbone.close()
            slot.link = None
        # Deliveries not taken yet went back to the queue with their connection: their tags
        # mean nothing on the next one (acking one there would close its channel). Requests
        # off the Redis lane stay: they are this slot's to run.
        kept = [taken for taken in slot.pending if isinstance(taken, Request)]
        slot.pending.clear()
        slot.pending.extend(kept)

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

    def _take(self, slot: Slot, link: Link | None, taken: Delivery | Request) -> None:
        owner: Link | None = link
        if isinstance(taken, Request):
            chunk, owner = self._accept_request(slot, taken), None
        elif link is not None:
            chunk = self._accept(link, taken)
        else:
            return  # a delivery of a connection that is gone: the broker has it back
        if chunk is None or (chunk.delivery.redelivered and not self._claim(slot, chunk, owner)):
            return
        for index in range(1, len(chunk.invocations)):
            self._share((chunk, index, owner))
        self._run(slot, (chunk, 0, owner))

    def _accept_request(self, slot: Slot, request: Request) -> Chunk | None:
        mine = taker(self.config.worker_id, slot.number)
        chunk = request_chunk(request, self.completion.redis, self._keys, self.config.pool, mine)
        if chunk is not None:
            with self._lock:
                self._taken.add(request.raw)
        return chunk

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
        link, kept = slot.link, list[Delivery | Request]()
        while slot.pending:
            taken = slot.pending.popleft()
            owner: Link | None = link
            if isinstance(taken, Request):
                if taken.requeued:
                    kept.append(taken)
                    continue
                chunk, owner = self._accept_request(slot, taken), None
            elif link is None or taken.redelivered:
                kept.append(taken)
                continue
            else:
                chunk = self._accept(link, taken)
            if chunk is not None:
                for index in range(len(chunk.invocations)):
                    self._share((chunk, index, owner))
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
