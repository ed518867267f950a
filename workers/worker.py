"""The worker daemon: consume invocation chunks, run them on slot threads, finish, then ack."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from broker_adapters.backbone import Backbone, Delivery
from broker_adapters.deadletter import dead_letter
from broker_adapters.topology import DEFAULT_POOL
from warren.errors import DecodeError, Unavailable, WarrenError
from warren.invocation import decode_chunk
from workers.completion import Chunk, Completion
from workers.executor import Executor

log = logging.getLogger("warren.worker")


@dataclass(frozen=True)
class WorkerConfig:
    slots: int = 2
    pool: str = DEFAULT_POOL
    cache_dir: Path = Path("/var/tmp/warren/code")
    max_idle: int = 0  # 0: twice the slots
    idle_s: float = 300.0
    heartbeat_s: float = 2.0
    worker_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


Job = tuple[Chunk, int, Backbone]


class Worker:
    """Prefetch equals the slots; a thread per slot; SIGTERM (stop) drains and returns.

    pika connections are not thread-safe: the consuming connection belongs to the thread in
    `run`, slot threads ack through `call_soon` (add_callback_threadsafe) and publish replies
    and retries on a connection of their own.
    """

    def __init__(
        self,
        config: WorkerConfig,
        connect: Callable[[str], Backbone],
        executor: Executor,
        completion: Completion,
    ) -> None:
        self.config = config
        self._connect = connect
        self.executor = executor
        self.completion = completion
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._unacked = 0
        self.busy = 0
        self.completed = 0
        self._threads = [
            threading.Thread(target=self._slot, name=f"slot-{n}", daemon=True)
            for n in range(config.slots)
        ]

    def status(self) -> dict[str, Any]:
        return {
            "slots": self.config.slots,
            "busy": self.busy,
            "warm": self.executor.pool.warm,
            "pool": self.config.pool,
            "completed": self.completed,
        }

    # -- the consuming thread -----------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        for thread in self._threads:
            thread.start()
        try:
            while not stop.is_set():
                try:
                    backbone = self._connect("warren-worker")
                except Unavailable as exc:
                    log.warning("%s; retrying in 1 s", exc)
                    stop.wait(1.0)
                    continue
                try:
                    self._serve(backbone, stop)
                except Unavailable as exc:
                    log.warning("%s; reconnecting", exc)
                    stop.wait(0.5)
                finally:
                    backbone.close()
        finally:
            for _ in self._threads:
                self._jobs.put(None)
            for thread in self._threads:
                thread.join(timeout=10)
            self.executor.pool.close()

    def _serve(self, backbone: Backbone, stop: threading.Event) -> None:
        backbone.declare(self.config.pool)
        queue_name = backbone.topology.work_queue(self.config.pool)
        tag = backbone.consume(
            queue_name, lambda d: self._on_delivery(backbone, queue_name, d), self.config.slots
        )
        last_reap = 0.0
        while not stop.is_set():
            backbone.process(0.5)
            last_reap += 0.5
            if last_reap > 30:
                self.executor.pool.reap()
                last_reap = 0.0
        # Drain: take no more work, let what was taken finish and be acked.
        backbone.cancel(tag)
        while self._unacked > 0:
            backbone.process(0.1)
        log.info("drained; stopping")

    def _on_delivery(self, backbone: Backbone, queue_name: str, delivery: Delivery) -> None:
        try:
            invocations = decode_chunk(delivery.body)
        except DecodeError as exc:
            log.warning("dead-lettering a malformed message: %s", exc)
            dead_letter(backbone, delivery, queue_name, str(exc))
            backbone.ack(delivery.tag)
            return
        chunk = Chunk(delivery, invocations)
        with self._lock:
            self._unacked += 1
        for index in range(len(invocations)):
            self._jobs.put((chunk, index, backbone))

    def _settle(self, backbone: Backbone, tag: int, ack: bool) -> None:
        def settle() -> None:
            with self._lock:
                self._unacked -= 1
            try:
                backbone.ack(tag) if ack else backbone.nack(tag, requeue=True)
            except Unavailable as exc:  # the connection died: the broker redelivers it
                log.warning("cannot settle a delivery: %s", exc)

        try:
            backbone.call_soon(settle)
        except Unavailable:
            with self._lock:
                self._unacked -= 1

    # -- slot threads -------------------------------------------------------------------------
    def _slot(self) -> None:
        publisher: Backbone | None = None
        while True:
            try:
                job = self._jobs.get(timeout=10)
            except queue.Empty:
                if publisher is not None:
                    try:
                        publisher.process(0)  # keep its heartbeats answered
                    except Unavailable:
                        publisher = None
                continue
            if job is None:
                break
            chunk, index, backbone = job
            with self._lock:
                self.busy += 1
            try:
                run = self.executor.run(chunk.invocations[index])
            finally:
                with self._lock:
                    self.busy -= 1
            if chunk.done(index, run):
                publisher = self._finish(chunk, backbone, publisher)
        if publisher is not None:
            publisher.close()

    def _finish(
        self, chunk: Chunk, backbone: Backbone, publisher: Backbone | None
    ) -> Backbone | None:
        try:
            if publisher is None or not publisher.is_open:
                publisher = self._connect("warren-worker-slot")
            self.completion.finish(chunk, publisher)
        except (WarrenError, redis.RedisError) as exc:
            # Nothing was acked: hand the chunk back so it runs again (at-least-once).
            log.error("cannot finish a chunk, requeueing it: %s", exc)
            self._settle(backbone, chunk.delivery.tag, ack=False)
            if publisher is not None:
                publisher.close()
            return None
        with self._lock:
            self.completed += len(chunk.invocations)
        self._settle(backbone, chunk.delivery.tag, ack=True)
        return publisher
