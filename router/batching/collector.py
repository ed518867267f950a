"""Gathering a mapping's next batch: batch size, batching window, the 6 MB cap, filters."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from warren.source import Source, SourceRecord

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invocation payload limit
EVENT_OVERHEAD_BYTES = 1024          # the event's own envelope around its records
MAX_READ_WAIT_S = 0.5                # so a long window still notices a stop request


@dataclass
class Gathered:
    """One gathering: the batch to invoke, records filtered out, records too big to ever send."""

    batch: list[SourceRecord] = field(default_factory=list)
    filtered: list[SourceRecord] = field(default_factory=list)
    oversize: list[SourceRecord] = field(default_factory=list)
    read: int = 0


class BatchCollector:
    """Reads records until the batch is full, the window has passed or the next would pass 6 MB.

    The window starts when gathering starts (after the previous invocation, as Lambda does for
    streams and queues); with a window of 0 the batch goes with whatever one read returned. A
    record that would push the payload past the cap waits, in order, for the next batch.
    """

    def __init__(
        self,
        source: Source,
        *,
        batch_size: int,
        window_s: float,
        accept: Callable[[SourceRecord], bool],
        max_bytes: int = MAX_PAYLOAD_BYTES,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.stopping = stopping
        self.source = source
        self.batch_size = batch_size
        self.window_s = window_s
        self.accept = accept
        self.max_bytes = max_bytes
        self.carry: list[SourceRecord] = []

    def gather(self, wait_s: float) -> Gathered:
        """The next batch; waits up to `wait_s` for a first record (longer only in a window)."""
        out = Gathered()
        size = EVENT_OVERHEAD_BYTES
        carried, self.carry = self.carry, []
        full = False
        for record in carried:
            if full or size + record.size > self.max_bytes or len(out.batch) >= self.batch_size:
                full = True
                self.carry.append(record)
                continue
            out.batch.append(record)
            size += record.size
        started = time.monotonic()
        while not full and len(out.batch) < self.batch_size and not self.stopping():
            if self.window_s > 0:
                wait = min(started + self.window_s - time.monotonic(), MAX_READ_WAIT_S)
                if wait <= 0:
                    break
            elif out.batch:
                break
            else:
                wait = min(wait_s, MAX_READ_WAIT_S)
            records = self.source.read(self.batch_size - len(out.batch), wait)
            out.read += len(records)
            if not records and self.window_s <= 0:
                break
            size, full = self._sort(records, out, size, full)
        return out

    def _sort(self, records: list[SourceRecord], out: Gathered, size: int,
              full: bool) -> tuple[int, bool]:
        for record in records:
            if full:
                self.carry.append(record)
            elif not self.accept(record):
                out.filtered.append(record)
            elif record.size + EVENT_OVERHEAD_BYTES > self.max_bytes:
                out.oversize.append(record)
            elif size + record.size > self.max_bytes:
                full = True
                self.carry.append(record)
            else:
                out.batch.append(record)
                size += record.size
        return size, full

    def take_carry(self) -> list[SourceRecord]:
        carried, self.carry = self.carry, []
        return carried
