"""The fleet's queue names, all derived from one prefix so that fleets (and tests) never mix."""

from __future__ import annotations

from dataclasses import dataclass

from warren.function import DEFAULT_POOL

__all__ = ["DEFAULT_POOL", "Topology"]


@dataclass(frozen=True)
class Topology:
    """Names of the queues one fleet uses; `prefix` is settings.prefix (WARREN_PREFIX)."""

    prefix: str = "warren"

    @property
    def async_queue(self) -> str:
        """Accepted `Event` invocations (and retries / throttled ones coming back) for routers."""
        return f"{self.prefix}.async"

    @property
    def dead_queue(self) -> str:
        """Messages no process could decode, with the reason in their headers."""
        return f"{self.prefix}.dead"

    def work_queue(self, pool: str = DEFAULT_POOL) -> str:
        """Admitted invocations for the workers of one pool."""
        return f"{self.prefix}.work.{pool}"

    def delay_queue(self, delay_ms: int) -> str:
        """A holding queue whose messages dead-letter back to the async queue after `delay_ms`."""
        return f"{self.prefix}.delay.{delay_ms}"

    def all_queues(self, pool: str = DEFAULT_POOL) -> list[str]:
        return [self.async_queue, self.work_queue(pool), self.dead_queue]
