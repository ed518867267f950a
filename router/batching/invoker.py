"""How a mapping hands a batch to its function: one seam, an in-process and a fleet adapter."""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from warren.aws import function_arn
from warren.errors import NotFound, TooManyRequests, Unavailable
from warren.invocation import InvocationResult
from warren.ports import Dispatcher, Pending

log = logging.getLogger("warren.poller")
# What a failed call raises that a batch takes as its reply (FleetInvoker.failure_reply).
AS_REPLY = (TooManyRequests, Unavailable, NotFound)


@dataclass(frozen=True)
class InvokeReply:
    """What came back from one synchronous invocation of a batch.

    `ok` is False when the batch never reached the function (throttled, fleet unreachable):
    Lambda does not count those as attempts. `function_error` is set ("Unhandled", or the
    platform's own code such as "Sandbox.Timedout") when the function ran and failed.
    """

    ok: bool
    payload: Any = None
    function_error: str | None = None
    throttled: bool = False
    retry_after_s: float = 0.0
    error: str | None = None
    executed_version: str = "$LATEST"
    request_id: str = ""


class Invoker(Protocol):
    """How a mapping's runner invokes its function on one batch's event."""

    # True when the invoker serialises events with orjson itself, so a source's pre-encoded
    # event (`Source.encoded_event`, with `orjson.Fragment` parts) can go out as it is.
    takes_encoded_events: bool

    def invoke(self, function_ref: str, event: dict[str, Any]) -> InvokeReply:
        """Run the function (NAME or NAME:QUALIFIER) on one event, synchronously."""
        ...

    def close(self) -> None: ...


class _Context:
    """The Lambda context object an in-process handler receives."""

    def __init__(self, function_name: str, timeout_s: float) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            function_arn(function_name)
        )
        self.memory_limit_in_mb = 128
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class PythonInvoker:
    """Calls a Python handler in this process: for `warren local`-style runs, tests and benches.

    The handler is a real `handler(event, context)`; an exception becomes an Unhandled function
    error with Lambda's error object as the payload, exactly as the fleet reports one.
    """

    takes_encoded_events = False

    def __init__(
        self, handler: Callable[[dict[str, Any], Any], Any], timeout_s: float = 3.0
    ) -> None:
        self._handler = handler
        self._timeout_s = timeout_s

    def invoke(self, function_ref: str, event: dict[str, Any]) -> InvokeReply:
        context = _Context(function_ref.split(":", 1)[0], self._timeout_s)
        try:
            result = self._handler(event, context)
        except Exception as exc:
            error = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_tb(exc.__traceback__)[-5:],
            }
            return InvokeReply(True, error, "Unhandled", request_id=context.aws_request_id)
        return InvokeReply(True, result, request_id=context.aws_request_id)

    def close(self) -> None:
        pass


class FleetInvoker:
    """Invokes through the fleet (a `Dispatcher`, RequestResponse) as Lambda does.

    A dispatcher serves one thread at a time, so each invoking thread gets its own from
    `dispatcher_factory`; `close()` closes them all. The dispatcher serialises an event with
    orjson, so a source's pre-encoded event (`orjson.Fragment` parts) goes out as it is.
    """

    takes_encoded_events = True

    def __init__(self, dispatcher_factory: Callable[[], Dispatcher]) -> None:
        self._factory = dispatcher_factory
        self._local = threading.local()
        self._dispatchers: list[Dispatcher] = []
        self._lock = threading.Lock()
        self._missing: set[str] = set()  # functions found deleted (said once each)

    def _dispatcher(self) -> Dispatcher:
        dispatcher: Dispatcher | None = getattr(self._local, "dispatcher", None)
        if dispatcher is None:
            dispatcher = self._local.dispatcher = self._factory()
            with self._lock:
                self._dispatchers.append(dispatcher)
        return dispatcher

    @property
    def defers_calls(self) -> bool:
        """Whether `start` returns before the reply (the Redis sync lane)."""
        return self._dispatcher().defers_calls

    def invoke(self, function_ref: str, event: dict[str, Any]) -> InvokeReply:
        reply = self.start(function_ref, event).result(None)
        assert reply is not None
        return reply

    def start(self, function_ref: str, event: dict[str, Any]) -> StartedInvoke:
        """`invoke` begun on this thread: the reply is taken by `StartedInvoke.result`."""
        name, _, qualifier = function_ref.partition(":")
        try:
            pending = self._dispatcher().start(name, event, qualifier=qualifier or None)
        except AS_REPLY as exc:
            return StartedInvoke(self, function_ref, None, self.failure_reply(function_ref, exc))
        return StartedInvoke(self, function_ref, pending)

    def failure_reply(self, function_ref: str, exc: Exception) -> InvokeReply:
        if isinstance(exc, TooManyRequests):
            return InvokeReply(
                False, throttled=True, retry_after_s=exc.retry_after_s, error=str(exc)
            )
        if not isinstance(exc, NotFound):
            return InvokeReply(False, error=str(exc))
        # The function (or its alias) was deleted under the mapping: an ordinary failure of
        # the batch (retried, then given up by the mapping's rules), said once.
        with self._lock:
            first = function_ref not in self._missing
            self._missing.add(function_ref)
        if first:
            log.error("mapping's function %s no longer exists: %s; its batches fail until "
                      "it is created again or the mapping is deleted", function_ref, exc)
        return InvokeReply(False, error=f"Function not found: {exc}")

    def result_reply(self, function_ref: str, result: InvocationResult) -> InvokeReply:
        self._missing.discard(function_ref)
        status = result.status_code
        if status == 429:
            return InvokeReply(False, throttled=True, retry_after_s=1.0, error="throttled")
        if status >= 300:
            return InvokeReply(False, error=f"invoke returned {status}")
        return InvokeReply(
            True,
            result.payload,
            result.function_error,
            executed_version=result.executed_version or "$LATEST",
            request_id=result.request_id,
        )

    def close(self) -> None:
        with self._lock:
            dispatchers, self._dispatchers = self._dispatchers, []
        for dispatcher in dispatchers:
            dispatcher.close()


class StartedInvoke:
    """A batch's invoke under way (FleetInvoker.start): `result(wait_s)` is its InvokeReply
    once the reply came (None until then), with failures turned into replies as `invoke`
    turns them."""

    def __init__(self, invoker: FleetInvoker, function_ref: str, pending: Pending | None,
                 reply: InvokeReply | None = None) -> None:
        self._invoker, self._ref, self._pending, self._reply = invoker, function_ref, pending, reply

    def result(self, wait_s: float | None) -> InvokeReply | None:
        if self._pending is None:
            return self._reply
        try:
            result = self._pending.result(wait_s)
        except AS_REPLY as exc:
            self._pending, self._reply = None, self._invoker.failure_reply(self._ref, exc)
            return self._reply
        if result is None:
            return None
        self._pending, self._reply = None, self._invoker.result_reply(self._ref, result)
        return self._reply

    def abandon(self) -> None:
        if self._pending is not None:
            self._pending.abandon()
            self._pending = None
