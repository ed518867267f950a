"""Lambda's async retry policy: retries with backoff on function error, bounded by event age."""

from __future__ import annotations

from dataclasses import dataclass

from router.record import EVENT_AGE_EXCEEDED, RETRIES_EXHAUSTED
from warren.errors import ConfigError
from warren.invocation import Invocation


@dataclass(frozen=True)
class Decision:
    """After a failed attempt: retry after `delay_s`, or give up with Lambda's `condition`."""

    retry: bool
    delay_s: float = 0.0
    condition: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """Lambda waits about one minute, then two, between attempts; `delays_s` makes it tunable.

    `throttle_delay_s` is how long an invocation over its concurrency limit first waits before
    it is offered again; throttles are not attempts. Each further throttle doubles the wait,
    up to `throttle_max_s` (Lambda backs throttled async events off to 5 minutes), bounded by
    the event's maximum age as ever.
    """

    delays_s: tuple[float, ...] = (60.0, 120.0)
    throttle_delay_s: float = 0.5
    throttle_max_s: float = 300.0

    def throttle_delay_for(self, invocation: Invocation) -> float:
        """The wait before a throttled invocation is offered again: doubling per throttle.

        Powers of two of the first wait only, so the delay queues stay few (one per step)."""
        steps = min(invocation.throttles, 30)
        return min(self.throttle_delay_s * float(2**steps), self._throttle_cap())

    def throttle_delays_ms(self) -> list[int]:
        """Every throttle wait this policy uses, in ms (the delay queues it needs)."""
        delays: list[int] = []
        delay = self.throttle_delay_s
        while True:
            delays.append(int(min(delay, self._throttle_cap()) * 1000))
            if delay >= self._throttle_cap():
                return delays
            delay *= 2

    def _throttle_cap(self) -> float:
        # The largest power-of-two multiple of the first wait not past the maximum.
        cap = self.throttle_delay_s
        while cap * 2 <= self.throttle_max_s:
            cap *= 2
        return max(cap, self.throttle_delay_s)

    def after_failure(self, invocation: Invocation, now: float | None = None) -> Decision:
        config = invocation.spec.async_config
        if invocation.attempt > config.max_retries:
            return Decision(False, condition=RETRIES_EXHAUSTED)
        delay = self.delays_s[min(invocation.attempt - 1, len(self.delays_s) - 1)]
        if invocation.age_s(now) + delay > config.max_event_age_s:
            return Decision(False, condition=EVENT_AGE_EXCEEDED)
        return Decision(True, delay_s=delay)

    def expired(self, invocation: Invocation, now: float | None = None) -> bool:
        """Too old to run at all (checked on admission, e.g. after waiting on throttles)."""
        return invocation.age_s(now) > invocation.spec.async_config.max_event_age_s

    @staticmethod
    def parse_delays(text: str) -> tuple[float, ...]:
        """'60,120' -> (60.0, 120.0); the CLI reads WARREN_ASYNC_RETRY_DELAYS with this."""
        try:
            delays = tuple(float(part) for part in text.split(",") if part.strip())
        except ValueError:
            delays = ()
        if not delays or any(d < 0 for d in delays):
            raise ConfigError(f"retry delays must be seconds like '60,120', got {text!r}")
        return delays
