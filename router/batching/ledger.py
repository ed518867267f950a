"""What a loop over a mapping's batches needs from the mapping's bookkeeping, as one seam.

`BatchRunner` keeps a mapping's books (attempts, verdicts, give-ups, stats) and runs the plain
loop; the lane loop (`LaneRunner`, a stream's ParallelizationFactor) drives the same books
through this Protocol, so neither module imports the other.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol

from router.batching.collector import Gathered
from router.batching.invoker import InvokeReply
from router.batching.lanes import Work
from warren.mapping import MappingSpec
from warren.source import Source, SourceRecord


class Ledger(Protocol):
    spec: MappingSpec
    concurrency: int
    poll_wait_s: float
    drain_s: float

    def take(self, source: Source, got: Gathered, submit: Callable[[Work], None]) -> None:
        """Account for records read (expired ones are given up) and hand the rest to `submit`."""
        ...

    def submit_work(
        self, source: Source, work: Work
    ) -> tuple[Future[InvokeReply], list[SourceRecord]] | None:
        """Start one batch's invocation; None when nothing of it is left to run."""
        ...

    def settle(
        self,
        source: Source,
        records: list[SourceRecord],
        reply: InvokeReply,
        pending: deque[Work],
        start_next: Callable[[], None] | None = None,
    ) -> None:
        """Judge a finished invocation: commit, retry (into `pending`) or give up."""
        ...
