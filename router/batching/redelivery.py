"""Records a source lost with their connection, and their redeliveries: each runs once more at most.

A queue source (`LosesDeliveries`) forgets what it read on a connection that died: the broker
delivers those messages again on the next one. Such stale records are neither invoked nor acked
by the runner any more. A stale batch already running when its connection died (its durable
invocation survives a broker restart) may still succeed: its messages' redeliveries then wait
for it and are acked without another run; if it fails they run.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Sequence

from router.batching.invoker import InvokeReply
from router.batching.lanes import Work
from warren.source import LosesDeliveries, Source, SourceRecord

log = logging.getLogger("warren.mapping")
DONE_TTL_S = 300.0  # how long a stale record's success answers for its redelivery
HOLD_S = 0.1        # how long a redelivery waits before looking at its stale copy again


class Redeliveries:
    """One runner's view of lost and redelivered records (no-op for other sources)."""

    def __init__(self, mapping: str) -> None:
        self._mapping = mapping
        self._source: Source | None = None
        self._lossy: LosesDeliveries | None = None
        self._running: Counter[str] = Counter()  # ids of records being invoked
        self._done: dict[str, float] = {}  # id of a stale record that succeeded -> expiry
        self._held: list[Work] = []  # redeliveries waiting for their stale copy's outcome

    def bind(self, source: Source) -> None:
        """Serve `source` from now on (isinstance on a Protocol is slow: once per source)."""
        if source is not self._source:
            self._source = source
            self._lossy = source if isinstance(source, LosesDeliveries) else None
            self._running.clear()

    def live(self, records: Sequence[SourceRecord]) -> list[SourceRecord]:
        """`records` without those the source lost with their connection."""
        if self._lossy is None or not records:
            return list(records)
        live = self._lossy.live(records)
        if len(live) < len(records):
            log.info("mapping %s: dropped %d record(s) read on a lost connection; the broker "
                     "delivers them again", self._mapping, len(records) - len(live))
        return live

    def sort(self, records: Sequence[SourceRecord], reply: InvokeReply | None = None
             ) -> tuple[list[SourceRecord], list[SourceRecord]]:
        """Split live records into (to invoke, done: a stale copy of theirs succeeded, ack them
        without a run); those whose stale copy is still being invoked are held (`release`)."""
        if self._lossy is None or not (self._running or self._done):
            return list(records), []
        now = time.monotonic()
        run, hold, done = [], [], []
        for record in records:
            if self._running[record.id]:
                hold.append(record)
            elif self._done.pop(record.id, 0.0) > now and _redelivered(record):
                done.append(record)  # never a new message that merely has the same id
            else:
                run.append(record)
        if hold:
            self._held.append(Work(hold, now + HOLD_S, reply))
        return run, done

    def release(self, pending: deque[Work]) -> None:
        """Hand the held redeliveries back to the runner's pending work, to be sorted again."""
        if self._held:
            pending.extend(self._held)
            self._held.clear()

    def started(self, records: Sequence[SourceRecord]) -> None:
        if self._lossy is not None:
            self._running.update(r.id for r in records)

    def finished(self, records: Sequence[SourceRecord], succeeded: Sequence[SourceRecord],
                 live_succeeded: Sequence[SourceRecord]) -> None:
        """A batch came back; `succeeded` ran well, of them `live_succeeded` can be acked."""
        if self._lossy is None:
            return
        self._running.subtract(r.id for r in records)
        self._running += Counter()  # drop the zeros
        self.succeeded_stale(succeeded, live_succeeded)

    def succeeded_stale(self, succeeded: Sequence[SourceRecord],
                        live_succeeded: Sequence[SourceRecord] = ()) -> None:
        """Of `succeeded`, those not in `live_succeeded` ran well but cannot be acked: their
        redeliveries are acked without a run."""
        if self._lossy is not None and len(live_succeeded) < len(succeeded):
            acked = {id(r) for r in live_succeeded}
            expiry = time.monotonic() + DONE_TTL_S
            now = time.monotonic()
            self._done = {k: v for k, v in self._done.items() if v > now}
            for record in succeeded:
                if id(record) not in acked:
                    self._done[record.id] = expiry


def _redelivered(record: SourceRecord) -> bool:
    """The broker's own redelivered flag (Lambda's `aws:rmq` record carries it)."""
    return isinstance(record.record, dict) and record.record.get("redelivered") is True
