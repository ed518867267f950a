"""Lanes of one stream mapping: Lambda's ParallelizationFactor, ordering kept per partition key.

A stream read with a parallelization factor N is split into N lanes by a stable hash (CRC-32)
of each record's partition key. Each lane runs at most one batch at a time, in the order its
records were read, and its failed batches go back to the front of its own queue: records with
the same key are therefore invoked in stream order and a failure stops only its own lane.
The runner (`router/batching/runner.py`) owns the lanes; this module only keeps their state.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from router.batching.collector import EVENT_OVERHEAD_BYTES, MAX_PAYLOAD_BYTES
from router.batching.invoker import InvokeReply
from warren.source import SourceRecord

MAX_FACTOR = 10  # Lambda's ParallelizationFactor range is 1..10
INDEX_CACHE = 65_536  # partition keys whose lane is remembered (then the memo starts over)


def partition_key(record: SourceRecord) -> str:
    """The record's partition key (Kinesis shape), or '' when it has none."""
    if record.partition:  # a stream source's record carries it as is
        return record.partition
    try:
        return str(record.record["kinesis"]["partitionKey"])
    except (KeyError, TypeError):
        return ""


@dataclass
class Work:
    """A batch waiting to run: its records, when it may run, and the reply that failed it."""

    records: list[SourceRecord]
    ready_at: float = 0.0
    reply: InvokeReply | None = None


@dataclass
class Lane:
    """One lane: records waiting for a batch, retries waiting their turn, and whether busy."""

    buffer: deque[SourceRecord] = field(default_factory=deque)
    since: float = 0.0          # monotonic time its oldest buffered record arrived
    pending: deque[Work] = field(default_factory=deque)
    busy: bool = False


class Lanes:
    """N lanes fed in read order; `take` forms a lane's next batch (size, window, 6 MB cap).

    Reading stops while the lanes that are not waiting on a retry hold a batch per lane
    (`read_ahead`), or while any lane holds `lane_cap` records: a lane blocked by a failing
    record lets the others go on until it has that many waiting, then the whole mapping waits
    for it (memory stays bounded; nothing is skipped). Small buffers matter: thousands of
    buffered records made every record several times dearer (measured).
    """

    def __init__(
        self, count: int, *, batch_size: int, window_s: float,
        max_bytes: int = MAX_PAYLOAD_BYTES, lane_cap: int | None = None,
    ) -> None:
        if not 1 <= count <= MAX_FACTOR:
            raise ValueError(f"lane count must be 1..{MAX_FACTOR}")
        self.lanes: list[Lane] = [Lane() for _ in range(count)]
        self.batch_size = batch_size
        self.window_s = window_s
        self.max_bytes = max_bytes
        self._index: dict[str, int] = {}  # partition key -> lane, for keys seen lately
        self.read_ahead = count * batch_size
        self.lane_cap = lane_cap or max(2 * batch_size, min(10 * batch_size, 5000))

    def lane_of(self, record: SourceRecord) -> int:
        key = partition_key(record)
        index = self._index.get(key)
        if index is None:
            if len(self._index) >= INDEX_CACHE:
                self._index.clear()
            index = self._index[key] = zlib.crc32(key.encode()) % len(self.lanes)
        return index

    def route(self, records: Sequence[SourceRecord], now: float) -> None:
        lanes, lane_of = self.lanes, self.lane_of
        for record in records:
            lane = lanes[lane_of(record)]
            if not lane.buffer:
                lane.since = now
            lane.buffer.append(record)

    def can_read(self) -> bool:
        """Read ahead about one batch per lane; a lane held back by a retry may hold up to
        `lane_cap` records before it stops the reading."""
        flowing = 0
        for lane in self.lanes:
            if len(lane.buffer) >= self.lane_cap:
                return False
            if not lane.pending:
                flowing += len(lane.buffer)
        return flowing < self.read_ahead

    def buffered(self) -> int:
        return sum(len(lane.buffer) for lane in self.lanes)

    def idle(self) -> Iterator[tuple[int, Lane]]:
        return ((i, lane) for i, lane in enumerate(self.lanes) if not lane.busy)

    def take(self, index: int, now: float) -> list[SourceRecord]:
        """The lane's next batch from its buffer; [] while its window is still open."""
        lane = self.lanes[index]
        if not lane.buffer:
            return []
        if self.window_s > 0 and len(lane.buffer) < self.batch_size \
                and now - lane.since < self.window_s and not self._over_cap(lane):
            return []
        batch: list[SourceRecord] = []
        size = EVENT_OVERHEAD_BYTES
        while lane.buffer and len(batch) < self.batch_size:
            record = lane.buffer[0]
            if batch and size + record.size > self.max_bytes:
                break
            batch.append(lane.buffer.popleft())
            size += record.size
        lane.since = now
        return batch

    def ready_in(self, now: float) -> float:
        """Seconds until some idle lane's window closes (inf when none waits on a window)."""
        waits = [lane.since + self.window_s - now for _, lane in self.idle()
                 if lane.buffer and not lane.pending]
        return max(0.0, min(waits)) if waits else float("inf")

    def _over_cap(self, lane: Lane) -> bool:
        size = EVENT_OVERHEAD_BYTES
        for record in lane.buffer:
            size += record.size
            if size > self.max_bytes:
                return True
        return False

    def drain(self) -> list[SourceRecord]:
        """Every buffered record (not the pending retries), emptying the buffers."""
        out: list[SourceRecord] = []
        for lane in self.lanes:
            out.extend(lane.buffer)
            lane.buffer.clear()
        return out
