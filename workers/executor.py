"""Running one invocation on a warm sandbox and turning its outcome into Lambda's result."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from router.admission.semaphore import Semaphore
from warren.codec import dumps_json
from warren.errors import StoreUnavailable, WarrenError
from warren.invocation import Invocation, InvocationResult, log_tail
from warren.store.redis import redis_errors
from warren.store.usage import Metered
from workers.codecache import CodeCache
from workers.pool import SandboxPool

log = logging.getLogger("warren.worker")


@dataclass(frozen=True)
class Run:
    """One finished run: the result to reply/record, whether the handler succeeded, its log."""

    invocation: Invocation
    result: InvocationResult
    ok: bool
    logs: str
    duration_ms: float | None = None  # None: no sandbox ran (a service error), nothing billed
    init_ms: float | None = None

    @property
    def metered(self) -> Metered | None:
        """What this run adds to the usage meter (store/usage.py), if a sandbox ran it."""
        if self.duration_ms is None:
            return None
        spec = self.invocation.spec
        return Metered(
            spec.name, spec.version, spec.memory_mb, self.duration_ms, self.init_ms, not self.ok
        )


class Executor:
    """Fetch the code, check a sandbox out of the pool, invoke, check it back in."""

    def __init__(self, pool: SandboxPool, codes: CodeCache, semaphore: Semaphore) -> None:
        self.pool = pool
        self.codes = codes
        self.semaphore = semaphore

    def run(self, inv: Invocation) -> Run:
        spec = inv.spec
        self._keep_lease(inv)
        try:
            code_dir = self.codes.path(spec.code_sha256)
            key, sandbox = self.pool.checkout(spec, code_dir)
        except WarrenError as exc:
            return self._service_error(inv, exc)
        try:
            outcome = sandbox.invoke(
                payload=inv.payload, request_id=inv.request_id, client_context=inv.client_context
            )
        except WarrenError as exc:
            sandbox.close()
            return self._service_error(inv, exc)
        finally:
            self.pool.checkin(key, sandbox)
        result = InvocationResult(
            status_code=200,
            function_error=None if outcome.ok else "Unhandled",
            executed_version=spec.version,
            log_result=log_tail(outcome.logs) if inv.log_tail else None,
            request_id=inv.request_id,
            raw_payload=outcome.result_json,
        )
        return Run(
            inv, result, bool(outcome.ok), outcome.logs, outcome.duration_ms, outcome.init_ms
        )

    def _keep_lease(self, inv: Invocation) -> None:
        # A chunk may wait in this worker, and a redelivered one may be old: make sure the
        # lease outlives this run (renewing by id never adds a second slot).
        if inv.lease_key and inv.lease_expires < time.time() + inv.spec.timeout_s + 1:
            try:
                with redis_errors("renewing a lease"):
                    self.semaphore.renew(inv.lease_key, inv.lease_id, inv.spec.timeout_s)
            except StoreUnavailable as exc:
                log.warning("cannot renew the lease of %s: %s", inv.request_id, exc)

    def _service_error(self, inv: Invocation, exc: Exception) -> Run:
        log.error("cannot run %s (%s): %s", inv.request_id, inv.spec.name, exc)
        body = {"errorType": "ServiceException", "errorMessage": str(exc)}
        text = f"START RequestId: {inv.request_id} Version: {inv.spec.version}\n{exc}\n"
        result = InvocationResult(
            status_code=500,
            function_error=None,
            executed_version=inv.spec.version,
            request_id=inv.request_id,
            raw_payload=dumps_json(body),
        )
        return Run(inv, result, False, text)
