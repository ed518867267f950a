"""The loop of a stream mapping with a parallelization factor: up to N lanes in flight at once.

Each step: start the next batch of every idle lane (its retry first, once due), read more
records while no lane is full, route them to lanes by partition key, and settle the finished
invocations into their own lane. Records are committed (XACK) one batch at a time as each
succeeds, so a lane's committed records are always a prefix of its records: a poller taking the
mapping over replays the rest in stream order and per-key order holds across the takeover.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from functools import partial

from router.batching.collector import BatchCollector
from router.batching.invoker import InvokeReply
from router.batching.lanes import Lanes, Work
from router.batching.ledger import Ledger
from warren.source import Source, SourceRecord

BUSY_WAIT_S = 0.002


class LaneRunner:
    """Drives `Lanes` for one mapping's books over one open source (see the module docstring)."""

    def __init__(self, runner: Ledger, source: Source, collector: BatchCollector,
                 factor: int) -> None:
        self.runner = runner
        self.source = source
        spec = runner.spec
        # One read can fill every lane (a read past 6 MB carries the rest to the next one).
        self.collector = BatchCollector(
            source, batch_size=min(spec.batch_size * factor, 10_000), window_s=0,
            accept=collector.accept, stopping=collector.stopping,
            max_bytes=collector.max_bytes,
        )
        self.lanes = Lanes(factor, batch_size=spec.batch_size, window_s=spec.window_s)
        self.inflight: dict[Future[InvokeReply], tuple[int, list[SourceRecord]]] = {}
        self.poll_wait_s = runner.poll_wait_s

    def step(self) -> None:
        now = time.monotonic()
        self._start(now)
        waited = False
        if self.lanes.can_read():
            wait_s = self._read_wait(now)
            got = self.collector.gather(wait_s)
            self.runner.take(self.source, got, self._route)
            waited = got.read == 0 and wait_s > 0
        elif not self.inflight:
            time.sleep(min(self._next_due(now), self.poll_wait_s))
        self._start(time.monotonic())
        self._harvest(0 if waited or self.lanes.can_read() else self.poll_wait_s)

    def _route(self, work: Work) -> None:
        self.lanes.route(work.records, time.monotonic())

    def _start(self, now: float) -> None:
        for index, _ in self.lanes.idle():
            if len(self.inflight) >= self.runner.concurrency:
                return
            self._start_lane(index, now)

    def _start_lane(self, index: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        lane = self.lanes.lanes[index]
        if lane.busy or len(self.inflight) >= self.runner.concurrency:
            return
        if lane.pending:
            if lane.pending[0].ready_at > now:
                return
            work = lane.pending.popleft()
        else:
            batch = self.lanes.take(index, now)
            if not batch:
                return
            work = Work(batch)
        started = self.runner.submit_work(self.source, work)
        if started is not None:
            self.inflight[started[0]] = (index, started[1])
            lane.busy = True

    def _read_wait(self, now: float) -> float:
        if self.inflight or self.lanes.buffered():
            return BUSY_WAIT_S if self.inflight else min(self._next_due(now), BUSY_WAIT_S)
        return min(self._next_due(now), self.poll_wait_s)

    def _next_due(self, now: float) -> float:
        dues = [lane.pending[0].ready_at - now for _, lane in self.lanes.idle() if lane.pending]
        dues.append(self.lanes.ready_in(now))
        return max(0.0, min(dues))

    def _harvest(self, timeout: float) -> None:
        if not self.inflight:
            return
        done, _ = wait(list(self.inflight), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            index, records = self.inflight.pop(future)
            lane = self.lanes.lanes[index]
            lane.busy = False
            try:
                reply = future.result()
            except Exception as exc:  # an invoker bug must not lose records: retry them
                reply = InvokeReply(False, error=f"invoker raised {exc!r}")
            self.runner.settle(self.source, records, reply, lane.pending,
                               partial(self._start_lane, index))

    def drain(self, deliver: bool) -> None:
        """On stop: settle what is in flight, then hand everything else back to the source."""
        deadline = time.monotonic() + self.runner.drain_s
        if not deliver:
            wait(list(self.inflight), timeout=self.runner.drain_s)
            return  # the source is broken: everything un-acked comes back by itself
        while self.inflight and time.monotonic() < deadline:
            self._harvest(0.2)
        back = [r for lane in self.lanes.lanes for w in lane.pending for r in w.records]
        back += self.lanes.drain() + self.collector.take_carry()
        back += [r for _, records in self.inflight.values() for r in records]
        if back:
            self.source.retry(back)
