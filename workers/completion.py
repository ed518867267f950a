"""After a chunk ran: release leases, store logs, reply or retry or record, in that order."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from router.admission.semaphore import Semaphore
from router.destination import DestinationSet
from router.record import SUCCESS, invocation_record
from router.retry import RetryPolicy
from warren.errors import StoreUnavailable
from warren.invocation import (
    REQUEST_RESPONSE,
    Invocation,
    encode_chunk,
    reply_list,
)
from warren.keys import REPLY_LIST_SCHEME, Keys
from warren.ports import Broker, Delivery
from warren.store.logs import LogStore
from warren.store.redis import Command, execute_raw, redis_errors
from warren.store.usage import UsageMeter
from workers.executor import Run
from workers.fence import fenced

log = logging.getLogger("warren.worker")

Execute = Callable[[Sequence[Command]], list[Any]]  # runs commands in one round trip


@dataclass
class Chunk:
    """One delivery from the work queue and its invocations, acked once all of them are done."""

    delivery: Delivery
    invocations: list[Invocation]
    runs: list[Run | None] = field(default_factory=list)
    fence: str = ""  # the chunk's fence key (workers/fence.py)
    token: int = 0  # this worker's fencing token: 0 for a first delivery
    taken_at: float = field(default_factory=time.monotonic)
    progress: set[str] = field(default_factory=set)  # finishing steps already done
    taken: Command | None = None  # off the Redis lane: removes it from its taker's list
    _left: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.runs = [None] * len(self.invocations)
        self._left = len(self.invocations)

    @property
    def request(self) -> bytes:
        """The Redis lane request as its taken list holds it (b"" for a broker delivery)."""
        return bytes(self.taken[-1]) if self.taken else b""

    def done(self, index: int, run: Run) -> bool:
        """Record a run; True for the caller that completed the whole chunk."""
        with self._lock:
            self.runs[index] = run
            self._left -= 1
            return self._left == 0


#: A chunk finished this soon after it was taken replies before its fenced Redis round trip
#: (the sync fast path): no broker could have handed it to another worker yet.
FAST_FINISH_S = 5.0
REPLY_KEEP_S = 90  # a reply list outlives the caller's wait (timeout + 30 s) by a minute


class Completion:
    """Finishes chunks; shared by a worker's slot threads (each passes its own publisher)."""

    def __init__(
        self,
        client: redis.Redis[bytes],
        prefix: str,
        semaphore: Semaphore,
        logs: LogStore,
        destinations: DestinationSet,
        policy: RetryPolicy,
        meter: UsageMeter | None = None,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self.redis = client
        self.prefix = prefix
        self.semaphore = semaphore
        self.logs = logs
        self.destinations = destinations
        self.policy = policy
        self.meter = meter or UsageMeter(prefix)

    def finish(
        self, chunk: Chunk, publisher: Broker | None, execute: Execute | None = None
    ) -> bool:
        """Everything downstream is durable when this returns True; the caller then acks.

        False: the chunk was taken over by another worker meanwhile (fenced); nothing of it
        was published and it must not be acked. Raises when a step fails; calling again
        redoes only the steps not done yet (`chunk.progress`), so a retried finish sends
        nothing twice. `publisher` None: a chunk off the Redis lane (sync runs only, replied on
        Redis), which needs no broker. `execute` runs the finishing round trip's commands
        (default: on a connection of the pool).
        """
        runs = [run for run in chunk.runs if run is not None]
        amqp_replies, replies = self._replies(chunk, runs)
        # A sync caller waits: reply first, then release the lease (the caller releases it
        # too with its next acquire, so its next call cannot race this release), unless the
        # chunk may have been taken over: then the fenced round trip decides first.
        suspect = chunk.token > 0 or time.monotonic() - chunk.taken_at > FAST_FINISH_S
        if not suspect:
            self._reply(chunk, amqp_replies, publisher)
        if "record" not in chunk.progress:
            # Unsuspected, Redis replies lead the round trip unfenced, as direct ones leave
            # before it: the caller wakes before the Lua call that follows has run.
            if not self._record(chunk, runs, replies, early=not suspect, execute=execute):
                return False
            chunk.progress.add("record")
        self._reply(chunk, amqp_replies, publisher)
        self._after_async(chunk, runs, publisher)
        return True

    def salvage(self, chunk: Chunk) -> None:
        """The chunk's connection died before it was finished: RabbitMQ has it back (or lost
        it, if the broker itself went). Its sync results waiting on Redis lists are pushed all
        the same, as nothing but Redis is needed: the caller, who may have lost the broker too,
        gets its answer instead of retrying a call that ran. Nothing else is written (a
        redelivery finishes the chunk under its own fencing token)."""
        runs = [run for run in chunk.runs if run is not None]
        _, replies = self._replies(chunk, runs)
        if not replies or "replies" in chunk.progress:
            return
        commands: list[tuple[str | bytes | int, ...]] = []
        for key, body, timeout_s in replies:
            commands += [("RPUSH", key, body), ("EXPIRE", key, timeout_s + REPLY_KEEP_S)]
        try:
            with redis_errors("pushing the results of a chunk whose connection died"):
                execute_raw(self._redis, commands)
        except StoreUnavailable as exc:
            log.warning("%s", exc)

    def _replies(
        self, chunk: Chunk, runs: list[Run]
    ) -> tuple[list[tuple[str, bytes, str]], list[tuple[str, bytes, int]]]:
        """Sync results to send: (direct reply-to publishes, Redis reply lists)."""
        amqp_replies: list[tuple[str, bytes, str]] = []
        replies: list[tuple[str, bytes, int]] = []
        reply_to = chunk.delivery.reply_to
        for run in runs:
            if run.invocation.invocation_type != REQUEST_RESPONSE or not reply_to:
                continue
            if reply_to.startswith(REPLY_LIST_SCHEME):
                # A reply through Redis leads the finishing round trip itself.
                key = reply_list(reply_to, self._prefix)
                if key is None:
                    log.warning("not replying to %r: not a reply list of this fleet", reply_to)
                    continue
                replies.append((key, run.result.encode(), run.invocation.spec.timeout_s))
                continue
            correlation = chunk.delivery.correlation_id or run.invocation.request_id
            amqp_replies.append((reply_to, run.result.encode(), correlation))
        return amqp_replies, replies

    def _after_async(self, chunk: Chunk, runs: list[Run], publisher: Broker | None) -> None:
        """Destinations and retries of the chunk's async runs, each step once."""
        retries: dict[float, list[Invocation]] = defaultdict(list)
        for index, run in enumerate(runs):
            inv = run.invocation
            if inv.invocation_type == REQUEST_RESPONSE:
                continue
            config = inv.spec.async_config
            step = f"sent:{index}"
            if run.ok:
                if config.on_success and step not in chunk.progress:
                    self._send(config.on_success, inv, SUCCESS, run)
                    chunk.progress.add(step)
                continue
            decision = self.policy.after_failure(inv)
            if decision.retry:
                retries[decision.delay_s].append(inv.next_attempt())
            elif config.on_failure and step not in chunk.progress:
                self._send(config.on_failure, inv, decision.condition, run)
                chunk.progress.add(step)
        for delay_s, invs in retries.items():
            step = f"retry:{delay_s}"
            if step in chunk.progress:
                continue
            assert publisher is not None, "only a broker delivery carries async invocations"
            queue = publisher.declare_delay(int(delay_s * 1000))
            publisher.publish(queue, encode_chunk(invs), confirm=True)
            chunk.progress.add(step)

    @staticmethod
    def _reply(
        chunk: Chunk, replies: list[tuple[str, bytes, str]], publisher: Broker | None
    ) -> None:
        if "replies" in chunk.progress:
            return
        for reply_to, body, correlation in replies:
            assert publisher is not None, "only a broker delivery is replied to on the broker"
            publisher.publish(reply_to, body, correlation_id=correlation, confirm=False)
        chunk.progress.add("replies")

    def _record(
        self, chunk: Chunk, runs: list[Run], replies: list[tuple[str, bytes, int]],
        early: bool = False, execute: Execute | None = None,
    ) -> bool:
        """Redis replies, lease release, log blocks and counters in one Redis round trip,
        fenced (the replies too unless `early`): False when the chunk was taken over (then
        nothing fenced was written)."""
        lead: list[tuple[str | bytes | int, ...]] = []
        for key, body, timeout_s in replies:
            # Kept a minute past the caller's longest wait, then gone (late or orphaned).
            lead += [("RPUSH", key, body), ("EXPIRE", key, timeout_s + REPLY_KEEP_S)]
        commands, lead = (lead, []) if not early else ([], lead)
        if chunk.taken is not None:  # unfenced: a copy taken over is another taker's entry
            lead.append(chunk.taken)
        leases: dict[str, list[str]] = defaultdict(list)
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for run in runs:
            inv = run.invocation
            if inv.lease_key and not inv.held_lease:  # a held lease is the caller's to release
                leases[inv.lease_key].append(inv.lease_id)
            commands.append(
                self.logs.append_command(inv.spec.name, inv.request_id, inv.spec.version, run.logs)
            )
            counts[inv.spec.name][0] += 1
            counts[inv.spec.name][1] += 0 if run.ok else 1
        for key, ids in leases.items():
            commands.append(self.semaphore.release_command(key, ids))
        for function, (n, errors) in counts.items():
            commands.append(("HINCRBY", Keys(self._prefix).stats(function), "invocations", n))
            if errors:
                commands.append(("HINCRBY", Keys(self._prefix).stats(function), "errors", errors))
        commands += self.meter.commands(m for run in runs if (m := run.metered) is not None)
        send = execute or (lambda batch: execute_raw(self._redis, batch))
        if not chunk.fence:
            send([*lead, *commands])
            return True
        *_, done = send([*lead, fenced(chunk.fence, chunk.token, commands)])
        return bool(done)

    def _send(self, uri: str, inv: Invocation, condition: str, run: Run) -> None:
        record = invocation_record(
            inv,
            condition,
            invoke_count=inv.attempt,
            function_error=run.result.function_error,
            response=run.result.raw_payload,
        )
        self.destinations.send(uri, record)
