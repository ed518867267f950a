"""After a chunk ran: release leases, store logs, reply or retry or record, in that order."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field

import redis

from router.admission.semaphore import Semaphore
from router.destination import DestinationSet
from router.record import SUCCESS, invocation_record
from router.retry import RetryPolicy
from warren.invocation import (
    REQUEST_RESPONSE,
    Invocation,
    encode_chunk,
    reply_list,
)
from warren.keys import REPLY_LIST_SCHEME, Keys
from warren.ports import Broker, Delivery
from warren.store.logs import LogStore
from warren.store.redis import execute_raw
from warren.store.usage import UsageMeter
from workers.executor import Run

log = logging.getLogger("warren.worker")


@dataclass
class Chunk:
    """One delivery from the work queue and its invocations, acked once all of them are done."""

    delivery: Delivery
    invocations: list[Invocation]
    runs: list[Run | None] = field(default_factory=list)
    _left: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.runs = [None] * len(self.invocations)
        self._left = len(self.invocations)

    def done(self, index: int, run: Run) -> bool:
        """Record a run; True for the caller that completed the whole chunk."""
        with self._lock:
            self.runs[index] = run
            self._left -= 1
            return self._left == 0


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
        self.semaphore = semaphore
        self.logs = logs
        self.destinations = destinations
        self.policy = policy
        self.meter = meter or UsageMeter(prefix)

    def finish(self, chunk: Chunk, publisher: Broker) -> None:
        """Everything downstream is durable when this returns; the caller then acks."""
        runs = [run for run in chunk.runs if run is not None]
        # A sync caller waits: reply first, then release the lease (the caller releases it
        # too with its next acquire, so its next call cannot race this release). A reply
        # through Redis leads the finishing round trip itself.
        replies: list[tuple[str, bytes, int]] = []
        reply_to = chunk.delivery.reply_to
        for run in runs:
            if run.invocation.invocation_type != REQUEST_RESPONSE or not reply_to:
                continue
            if reply_to.startswith(REPLY_LIST_SCHEME):
                key = reply_list(reply_to, self._prefix)
                if key is None:
                    log.warning("not replying to %r: not a reply list of this fleet", reply_to)
                    continue
                replies.append((key, run.result.encode(), run.invocation.spec.timeout_s))
                continue
            publisher.publish(
                reply_to,
                run.result.encode(),
                correlation_id=chunk.delivery.correlation_id or run.invocation.request_id,
                confirm=False,
            )
        self._record(runs, replies)
        retries: dict[float, list[Invocation]] = defaultdict(list)
        for run in runs:
            inv = run.invocation
            if inv.invocation_type == REQUEST_RESPONSE:
                continue
            config = inv.spec.async_config
            if run.ok:
                if config.on_success:
                    self._send(config.on_success, inv, SUCCESS, run)
                continue
            decision = self.policy.after_failure(inv)
            if decision.retry:
                retries[decision.delay_s].append(inv.next_attempt())
            elif config.on_failure:
                self._send(config.on_failure, inv, decision.condition, run)
        for delay_s, invs in retries.items():
            queue = publisher.declare_delay(int(delay_s * 1000))
            publisher.publish(queue, encode_chunk(invs), confirm=True)

    def _record(self, runs: list[Run], replies: list[tuple[str, bytes, int]]) -> None:
        """Redis replies, lease release, log blocks and counters in one Redis round trip."""
        commands: list[tuple[str | bytes | int, ...]] = []
        for key, body, timeout_s in replies:
            # Kept a minute past the caller's longest wait, then gone (late or orphaned).
            commands += [("RPUSH", key, body), ("EXPIRE", key, timeout_s + REPLY_KEEP_S)]
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
        execute_raw(self._redis, commands)

    def _send(self, uri: str, inv: Invocation, condition: str, run: Run) -> None:
        record = invocation_record(
            inv,
            condition,
            invoke_count=inv.attempt,
            function_error=run.result.function_error,
            response=run.result.raw_payload,
        )
        self.destinations.send(uri, record)
