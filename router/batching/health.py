"""A mapping's source health: waits that double while it keeps failing, one log line per change."""

from __future__ import annotations

import logging
import time

from warren.errors import Unavailable, WarrenError
from warren.redact import redact

log = logging.getLogger("warren.poller")

#: Infrastructure that went away comes back: retry within seconds, at most half a minute.
UNAVAILABLE_WAITS_S = (1.0, 30.0)
#: A source that is wrong (deleted queue, denied access) is retried slowly, up to 5 minutes.
BROKEN_WAITS_S = (5.0, 300.0)
SETTLED_S = 10.0  # a source that served this long is healthy again


class SourceHealth:
    """`failed(exc)` returns how long to wait before reopening; `serving()` marks an open source,
    and once it has served `SETTLED_S` the waits start from the beginning again."""

    def __init__(self, mapping_id: str) -> None:
        self.mapping_id = mapping_id
        self.failures = 0
        self.reason = ""
        self._serving_since: float | None = None

    def failed(self, exc: WarrenError, what: str) -> float:
        self._serving_since = None
        first, cap = UNAVAILABLE_WAITS_S if isinstance(exc, Unavailable) else BROKEN_WAITS_S
        wait = min(cap, first * 2.0 ** min(self.failures, 20))
        self.failures += 1
        reason = redact(f"{what}: {exc}")
        if reason != self.reason:
            log.warning(
                "mapping %s: %s (retrying with waits doubling up to %.0f s)",
                self.mapping_id, reason, cap,
            )
            self.reason = reason
        return wait

    def serving(self) -> None:
        now = time.monotonic()
        if self._serving_since is None:
            self._serving_since = now
        elif self.failures and now - self._serving_since >= SETTLED_S:
            log.info("mapping %s: source healthy again after %d failure(s)", self.mapping_id,
                     self.failures)
            self.failures = 0
            self.reason = ""
