"""Sync calls an ordered mapping's runner makes on its own thread (router/batching/runner.py).

An ordered source without a parallelization factor has one batch running at a time. Its call
is begun on the runner's thread (`FleetInvoker.start`: the request written, the reply not yet
read), the runner reads ahead and commits while the batch runs, and takes the reply when it
waits. No thread hand-over sits between a batch's reply and the next batch's start: through a
pool thread the two hand-overs took ~0.37 ms of a ~2.4 ms batch cycle (measured with stamps
in every process, docs/mappings.md).

The calls look like the pool's futures to the runner: `submit` returns a Future, `wait`
completes the ones whose reply came.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any, Protocol, runtime_checkable

from router.batching.invoker import InvokeReply


class Started(Protocol):
    def result(self, wait_s: float | None) -> InvokeReply | None: ...

    def abandon(self) -> None: ...


@runtime_checkable
class Starter(Protocol):
    """An invoker whose calls can be begun and awaited apart (FleetInvoker)."""

    @property
    def defers_calls(self) -> bool: ...

    def start(self, function_ref: str, event: dict[str, Any]) -> Started: ...


def inline_calls(invoker: object) -> InlineCalls | None:
    """InlineCalls for `invoker` if its calls can be awaited apart, else None (a pool)."""
    if isinstance(invoker, Starter) and invoker.defers_calls:
        return InlineCalls(invoker)
    return None


class InlineCalls:
    def __init__(self, invoker: Starter) -> None:
        self._invoker = invoker
        self._running: dict[Future[InvokeReply], Started] = {}

    def submit(self, function_ref: str, event: dict[str, Any]) -> Future[InvokeReply]:
        future: Future[InvokeReply] = Future()
        future.set_running_or_notify_cancel()
        try:
            started = self._invoker.start(function_ref, event)
        except Exception as exc:  # the runner treats it as the pool's: retried, logged
            future.set_exception(exc)
            return future
        self._running[future] = started  # not polled now: Redis has not answered yet
        return future

    def wait(self, futures: Iterable[Future[InvokeReply]],
             timeout: float | None) -> list[Future[InvokeReply]]:
        """The futures done, after waiting up to `timeout` for the first of them."""
        futures = list(futures)
        done = [f for f in futures if f.done()]
        if done or not futures:
            return done
        self._settle(futures[0], timeout)  # one at a time: an ordered shard
        return [f for f in futures if f.done()]

    def abandon(self) -> None:
        """Stop waiting on every call still running (the runner is stopping or reopening its
        source): their records come again, as any batch's unsettled at a stop."""
        for future, started in self._running.items():
            started.abandon()
            future.cancel()
        self._running.clear()

    def _settle(self, future: Future[InvokeReply], timeout: float | None) -> None:
        started = self._running.get(future)
        if started is None:
            return
        try:
            reply = started.result(timeout)
        except Exception as exc:
            del self._running[future]
            future.set_exception(exc)
            return
        if reply is not None:
            del self._running[future]
            future.set_result(reply)
