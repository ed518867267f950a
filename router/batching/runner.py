"""Running one mapping: gather batches, invoke, and apply Lambda's retry and failure rules.

The runner thread owns the source (reads, commits, retries: sources need not be thread-safe);
invocations run on a pool of `concurrency` threads. A record is committed only after its batch
succeeded, it was filtered out, or it was given up on and reported to the on-failure
destination (durably, first). Failed records wait in memory, still un-acked in their source, for
their retry: a stream retries its failed batch before reading anything newer (progress stops at
the lowest failed record); a queue keeps serving other records meanwhile. Attempt counts live in
Redis, so a poller taking a mapping over does not reset anybody's retry quota.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from router.batching.attempts import Attempts
from router.batching.collector import BatchCollector, Gathered
from router.batching.failure import (
    RECORD_AGE_EXCEEDED,
    RECORD_TOO_LARGE,
    RETRIES_EXHAUSTED,
    failure_record,
)
from router.batching.health import SourceHealth
from router.batching.inline import InlineCalls, inline_calls
from router.batching.invoker import Invoker, InvokeReply
from router.batching.lane_runner import LaneRunner
from router.batching.lanes import Work as _Work
from router.batching.redelivery import Redeliveries
from router.batching.verdict import Verdict, judge
from warren.aws import function_arn as lambda_arn
from warren.errors import Unavailable, WarrenError
from warren.filter import FilterCriteria
from warren.mapping import MappingSpec
from warren.ports import RecordSink
from warren.redact import redact
from warren.source import Source, SourceRecord
from warren.store.mappings import MappingStore

log = logging.getLogger("warren.mapping")
STATS_EVERY_S = 0.5
BUSY_WAIT_S = 0.002


class BatchRunner:
    """Runs one mapping until `stop` is set; see the module docstring for the guarantees."""

    def __init__(
        self,
        spec: MappingSpec,
        open_source: Callable[[], Source],
        invoker: Invoker,
        store: MappingStore,
        *,
        destination: Callable[[str], RecordSink] | None = None,
        concurrency: int = 1,
        function_arn: str = "",
        poll_wait_s: float = 0.5,
        retry_base_s: float = 0.1,
        retry_cap_s: float = 2.0,
        drain_s: float = 15.0,
    ) -> None:
        self.spec = spec
        self._open_source = open_source
        self._invoker = invoker
        self._store = store
        self._destination_factory = destination
        self._destination: RecordSink | None = None
        self.concurrency = max(1, concurrency)
        self._arn = function_arn or lambda_arn(spec.function)
        self._poll_wait_s = self.poll_wait_s = poll_wait_s
        self._retry_base_s = retry_base_s
        self._retry_cap_s = retry_cap_s
        self._drain_s = self.drain_s = drain_s
        self._filters = FilterCriteria(spec.filters)
        self._attempts = Attempts(store.redis, store.key(spec.uuid, "attempts"))
        self._inline: InlineCalls | None = None
        self._health = SourceHealth(spec.uuid)
        self._stats: Counter[str] = Counter()
        self._last_result = ""
        self._stats_at = 0.0
        self._throttle_s = 0.0
        self._executor: ThreadPoolExecutor | None = None
        self._redeliveries = Redeliveries(spec.uuid)  # a queue's records lost with a connection

    # -- the loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self._attempts.load()
        while not stop.is_set():
            try:
                source = self._open_source()
            except WarrenError as exc:
                self._failed(stop, exc, "cannot open its source", "Source unavailable: ")
                continue
            try:
                self._serve(source, stop)
            except WarrenError as exc:  # e.g. the queue was deleted: say so, try again later
                self._failed(stop, exc, "its source failed", "")
            finally:
                try:
                    source.close()
                except Exception:  # closing a broken connection may fail again
                    log.debug("mapping %s: close failed", self.spec.uuid, exc_info=True)
        self._flush_stats(None, force=True)
        if self._destination is not None:
            self._destination.close()
        self._invoker.close()

    def _failed(self, stop: threading.Event, exc: WarrenError, what: str, label: str) -> None:
        """Wait (doubling while it keeps failing) before the source is opened again; the
        reason shows in `warren mapping get` (LastProcessingResult) and once in the log."""
        wait = self._health.failed(exc, what)
        self._last_result = redact(f"PROBLEM: {label}{exc}")
        self._flush_stats(None, force=True)
        stop.wait(wait)

    def _serve(self, source: Source, stop: threading.Event) -> None:
        collector = BatchCollector(
            source, batch_size=self.spec.batch_size, window_s=self.spec.window_s,
            accept=self._accepts(source), stopping=stop.is_set,
        )
        pending: deque[_Work] = deque()
        self._redeliveries.bind(source)
        inflight: dict[Future[InvokeReply], list[SourceRecord]] = {}
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"map-{self.spec.uuid[:8]}")
        self._executor = pool
        lanes: LaneRunner | None = None
        if source.ordered and self.spec.parallelization_factor > 1:
            lanes = LaneRunner(self, source, collector, self.spec.parallelization_factor)
        self._inline = inline_calls(self._invoker) if source.ordered and not lanes else None
        broken: Unavailable | None = None
        try:
            while not stop.is_set():
                if lanes is not None:
                    lanes.step()
                else:
                    self._step(source, collector, pending, inflight)
                self._flush_stats(source)
        except Unavailable as exc:
            broken = exc
        finally:
            if lanes is not None:
                lanes.drain(deliver=broken is None)
            else:
                self._drain(source, pending, inflight, collector, deliver=broken is None)
            if self._inline is not None:
                self._inline.abandon()
            pool.shutdown(wait=False)
            self._executor = None
        if broken is not None:
            raise broken

    def _step(self, source: Source, collector: BatchCollector, pending: deque[_Work],
              inflight: dict[Future[InvokeReply], list[SourceRecord]]) -> None:
        pool_submit = self._submitter(source, inflight)
        self._redeliveries.release(pending)
        now = time.monotonic()
        if source.ordered:
            if inflight:
                if not pending and self.spec.window_s <= 0:
                    # Read ahead while the batch runs; it waits behind any retry of it.
                    self.take(source, collector.gather(0.0), pending.append)
                self._harvest(source, pending, inflight, timeout=self._poll_wait_s)
            elif pending:
                if pending[0].ready_at <= now:
                    pool_submit(pending.popleft())
                else:
                    time.sleep(min(pending[0].ready_at - now, self._poll_wait_s))
            else:
                self.take(source, collector.gather(self._poll_wait_s), pool_submit)
            return
        ready = [w for w in pending if w.ready_at <= now][: self.concurrency - len(inflight)]
        for work in ready:
            pending.remove(work)
            pool_submit(work)
        if len(inflight) < self.concurrency:
            if inflight:
                wait_s = BUSY_WAIT_S  # a short block, not a spin: the invokers need the GIL
            elif pending:
                wait_s = min(max(0.0, min(w.ready_at for w in pending) - now), self._poll_wait_s)
            else:
                wait_s = self._poll_wait_s
            self.take(source, collector.gather(wait_s), pool_submit)
            self._harvest(source, pending, inflight, timeout=0)
        else:
            self._harvest(source, pending, inflight, timeout=self._poll_wait_s)

    def _submitter(
        self, source: Source, inflight: dict[Future[InvokeReply], list[SourceRecord]]
    ) -> Callable[[_Work], None]:
        def submit(work: _Work) -> None:
            started = self.submit_work(source, work)
            if started is not None:
                inflight[started[0]] = started[1]
        return submit

    def submit_work(
        self, source: Source, work: _Work
    ) -> tuple[Future[InvokeReply], list[SourceRecord]] | None:
        """Start one invocation of `work` (after giving up on its expired records), or None
        when nothing is left of it."""
        records, done = self._redeliveries.sort(self._redeliveries.live(work.records), work.reply)
        if done:  # redeliveries of stale records that succeeded: ran already, no second run
            source.commit(done)
            self._stats["succeeded"] += len(done)
        records = self._expire(source, records, work.reply)
        if not records:
            return None  # e.g. all read on a connection that died: they come again
        event = self._event(source, records)
        future = self._pool_submit(event)
        self._redeliveries.started(records)
        self._stats["invoked"] += len(records)
        self._stats["batches"] += 1
        return future, records

    def _event(self, source: Source, records: Sequence[SourceRecord]) -> dict[str, Any]:
        # An invoker that serialises events itself with orjson (the fleet's) takes the source's
        # pre-encoded form when the source has one; a Python handler gets plain dicts.
        if self._invoker.takes_encoded_events:
            return source.encoded_event(records)
        return source.event(records)

    def _pool_submit(self, event: dict[str, Any]) -> Future[InvokeReply]:
        if self._executor is None:
            raise RuntimeError("runner is not serving")
        if self._inline is not None:
            return self._inline.submit(self.spec.function, event)
        return self._executor.submit(self._invoker.invoke, self.spec.function, event)

    # -- outcomes ----------------------------------------------------------------------------
    def take(self, source: Source, got: Gathered, submit: Callable[[_Work], None]) -> None:
        self._stats["read"] += got.read
        filtered = self._redeliveries.live(got.filtered)
        if filtered:
            source.commit(filtered)
            self._stats["filtered"] += len(filtered)
        if got.oversize:
            self._give_up(source, got.oversize, RECORD_TOO_LARGE, None)
        if got.batch:
            submit(_Work(got.batch))

    def _harvest(self, source: Source, pending: deque[_Work],
                 inflight: dict[Future[InvokeReply], list[SourceRecord]], timeout: float) -> None:
        if not inflight:
            return
        done = self._wait(inflight, timeout)
        start_next = None
        if source.ordered:
            submit = self._submitter(source, inflight)

            def start_next() -> None:
                if not inflight and pending and pending[0].ready_at <= time.monotonic():
                    submit(pending.popleft())

        for future in done:
            records = inflight.pop(future)
            try:
                reply = future.result()
            except Exception as exc:  # an invoker bug must not lose records: retry them
                log.exception("mapping %s: invoker raised", self.spec.uuid)
                reply = InvokeReply(False, error=f"invoker raised {exc!r}")
            self.settle(source, records, reply, pending, start_next)

    def settle(self, source: Source, records: list[SourceRecord], reply: InvokeReply,
                pending: deque[_Work], start_next: Callable[[], None] | None = None) -> None:
        """Apply a reply's verdict. `start_next` (ordered sources) starts the batch that was
        waiting behind this one: called only when nothing of this batch runs again, and before
        the commit, so the next invocation does not wait for the checkpoint's round trip (the
        checkpoint still follows the batch it belongs to)."""
        verdict = self._judge(source, records, reply)
        self._last_result = verdict.reason
        if start_next is not None and verdict.reached and not verdict.next:
            start_next()
        if verdict.succeeded:
            # Records whose connection died meanwhile cannot be acked: the broker delivers
            # them again (one more run each), and the source serves on without a failure.
            done = self._redeliveries.live(verdict.succeeded)
            if done:
                try:
                    source.commit(done)
                except Unavailable:  # lost meanwhile: their redeliveries need no run
                    self._redeliveries.succeeded_stale(done)
                    raise
                self._attempts.forget(done)
            self._stats["succeeded"] += len(done)
        self._redeliveries.finished(records, verdict.succeeded, done if verdict.succeeded else [])
        delay = 0.0
        if verdict.counts_attempt and verdict.failed:
            worst = self._attempts.spend(verdict.failed)
            delay = min(self._retry_base_s * 2 ** (worst - 1), self._retry_cap_s)
        if not verdict.reached:
            self._throttle_s = min(max(self._throttle_s * 2, 0.05, reply.retry_after_s), 5.0)
            delay = self._throttle_s
        else:
            self._throttle_s = 0.0
        works = [_Work(batch, time.monotonic() + delay, reply) for batch in verdict.next if batch]
        if source.ordered:
            pending.extendleft(reversed(works))  # retries go before anything newer
        else:
            pending.extend(works)

    def _wait(self, futures: Iterable[Future[InvokeReply]],
              timeout: float) -> Iterable[Future[InvokeReply]]:
        if self._inline is not None:
            return self._inline.wait(futures, timeout)
        return wait(list(futures), timeout=timeout, return_when=FIRST_COMPLETED)[0]

    def _judge(self, source: Source, records: list[SourceRecord], reply: InvokeReply) -> Verdict:
        return judge(reply, records, ordered=source.ordered, bisect=self.spec.bisect,
                     report_item_failures=self.spec.report_item_failures)

    def _expire(self, source: Source, records: list[SourceRecord],
                reply: InvokeReply | None) -> list[SourceRecord]:
        """Give up on the records past their max age or retry quota; return the rest."""
        if self.spec.max_age_s >= 0:
            cutoff = time.time() - self.spec.max_age_s
            old = [r for r in records if r.arrival < cutoff]
            if old:
                self._give_up(source, old, RECORD_AGE_EXCEEDED, reply)
                records = [r for r in records if r.arrival >= cutoff]
        if self.spec.max_retries >= 0:
            spent = [r for r in records if self._attempts.get(r.id, 0) > self.spec.max_retries]
            if spent:
                self._give_up(source, spent, RETRIES_EXHAUSTED, reply)
                gone = {r.id for r in spent}
                records = [r for r in records if r.id not in gone]
        return records

    def _give_up(self, source: Source, records: Sequence[SourceRecord], condition: str,
                 reply: InvokeReply | None) -> None:
        if self.spec.on_failure and self._destination_factory is not None:
            if self._destination is None:
                self._destination = self._destination_factory(self.spec.on_failure)
            self._destination.send(failure_record(
                kind=self.spec.kind, source_uri=self.spec.source, function_arn=self._arn,
                records=records, condition=condition, reply=reply,
                invoke_count=max(self._attempts.get(r.id, 0) for r in records),
            ))
            self._stats["destination"] += len(records)
        source.commit(records)
        self._attempts.forget(records)
        self._stats["failed"] += len(records)
        log.info("mapping %s: gave up on %d record(s): %s", self.spec.uuid, len(records), condition)

    def _drain(self, source: Source, pending: deque[_Work],
               inflight: dict[Future[InvokeReply], list[SourceRecord]],
               collector: BatchCollector, deliver: bool) -> None:
        """On stop: let running invocations finish and settle, then hand the rest back."""
        self._redeliveries.release(pending)
        deadline = time.monotonic() + self._drain_s
        while inflight and deliver and time.monotonic() < deadline:
            self._harvest(source, pending, inflight, timeout=0.2)
        if not deliver:
            self._wait(inflight, self._drain_s)
            # The source is broken: everything un-acked comes back by itself; what ran well
            # meanwhile is not run again when it does.
            for future, records in inflight.items():
                if future.done() and future.exception() is None:
                    self._redeliveries.succeeded_stale(
                        self._judge(source, records, future.result()).succeeded)
            return
        back = [r for w in pending for r in w.records] + collector.take_carry()
        back += [r for records in inflight.values() for r in records]
        if back:
            source.retry(back)

    # -- bookkeeping -------------------------------------------------------------------------
    def _accepts(self, source: Source) -> Callable[[SourceRecord], bool]:
        if not self._filters:
            return lambda record: True
        kind = source.kind
        return lambda r: self._filters.accepts(kind, r.data, r.record)

    def _flush_stats(self, source: Source | None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._stats_at < STATS_EVERY_S:
            return
        self._stats_at = now
        if source is not None:
            self._health.serving()
        lag = source.lag_s() if source is not None else None
        self._store.count(self.spec.uuid, self._stats, lag_s=lag, last_result=self._last_result)
        self._stats.clear()
