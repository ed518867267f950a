"""Awaiting a sync call's reply: on the caller's direct reply-to, or on a Redis list of its own.

On the Redis lane (`lane_reply`) the request is pushed in the same write as the first pop.
Either way the wait gives up early, with a reason: NO_WORKER when no worker of the pool has a
heartbeat (router/workerwatch.py), RETURNED when RabbitMQ could not route the request (the
transient sync lane was gone: a broker restart; the next call declares it again), None at the
deadline. A broker that goes away ends the wait at once (BrokerUnavailable from `process`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Final

import redis

from router.workerwatch import NO_WORKER, WorkerWatch
from warren.errors import Unavailable
from warren.invocation import InvocationResult
from warren.ports import Broker
from warren.store.redis import Command, PendingPop, pop_waiting, redis_errors

RETURNED: Final = b"\0returned"  # a reply no worker can send (results are msgpack)


def amqp_reply(
    backbone: Broker, request_id: str, replies: dict[str, bytes], watch: WorkerWatch,
    wait_s: float,
) -> bytes | None:
    """The reply the connection's reply consumer puts in `replies` under `request_id`."""
    deadline = time.monotonic() + wait_s
    while request_id not in replies:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        if request_id in backbone.returned:
            backbone.returned.discard(request_id)
            return RETURNED
        if watch.gone():
            return NO_WORKER
        backbone.process(min(remaining, 1.0))
    return replies.pop(request_id)


def redis_reply(
    backbone: Broker, client: redis.Redis[bytes], key: str, watch: WorkerWatch, wait_s: float,
    store: redis.Redis[bytes], run_s: float, slice_s: int = 1,
) -> bytes | None:
    """The reply the worker pushes onto list `key`, popped on `client` (a connection of its
    own), a slice at a time, servicing the broker connection in between (heartbeats, a
    returned request).

    If the broker connection goes meanwhile, the request may still be running: a worker that
    took it pushes its result here even when its own broker connection went too (completion.py),
    and a caller giving up at once might retry it while the first run goes on. So the wait goes
    on for `run_s` more (the function's timeout): a result that comes is returned; none means
    the broker took the request with it, and the broker's error is raised."""
    deadline = time.monotonic() + wait_s
    lost: Unavailable | None = None
    while True:
        with redis_errors("awaiting a sync reply", store):
            got = pop_waiting(client, key, slice_s)
        if got is not None:
            return got
        if lost is not None:
            if time.monotonic() >= deadline:
                raise lost
            continue
        try:
            backbone.process(0)
        except Unavailable as exc:
            lost, deadline = exc, min(deadline, time.monotonic() + run_s)
            continue
        if backbone.returned:
            backbone.returned.clear()
            return RETURNED
        if time.monotonic() >= deadline:
            return None
        if watch.gone():
            return NO_WORKER


def lane_reply(
    client: redis.Redis[bytes], push: Sequence[Command], key: str, watch: WorkerWatch,
    wait_s: float, store: redis.Redis[bytes], withdraw: Command | None = None, slice_s: int = 1,
) -> bytes | None:
    """The request pushed onto its pool's Redis lane (`push`, store/synclane.py) in the same
    write as the first pop of its reply list `key`, on `client` (a connection of its own).
    Redis going away fails the wait at once (StoreUnavailable): the lane and the reply list
    live in it, and nothing is left behind but a lease that expires. A wait that gives up
    (no live worker, or the deadline) first takes its request back off the lane with
    `withdraw`, if no worker took it yet: a call that failed does not run later."""
    return LaneCall(client, push, key, watch, wait_s, store, withdraw, slice_s).poll(None)[1]


class LaneCall:
    """`lane_reply` begun: the request is sent now; `poll` takes the reply (or the reason the
    wait gave up) once it is there. Until then `client`'s connection is the call's."""

    def __init__(self, client: redis.Redis[bytes], push: Sequence[Command], key: str,
                 watch: WorkerWatch, wait_s: float, store: redis.Redis[bytes],
                 withdraw: Command | None = None, slice_s: int = 1) -> None:
        self._client, self._key, self._watch, self._slice_s = client, key, watch, slice_s
        self._store, self._withdraw = store, withdraw
        self._deadline = time.monotonic() + wait_s
        with redis_errors("sending a sync request and awaiting its reply", store):
            self._pop = PendingPop(client, key, slice_s, push)

    def poll(self, wait_s: float | None) -> tuple[bool, bytes | None]:
        """(True, the reply, NO_WORKER or None at the deadline) once settled; (False, None)
        while it is not, after waiting up to `wait_s` (None: until it is)."""
        while True:
            with redis_errors("sending a sync request and awaiting its reply", self._store):
                done, got = self._pop.poll(wait_s)
                if not done:
                    return False, None
                if got is not None:
                    return True, got
                if time.monotonic() >= self._deadline:
                    return True, _withdrawn(self._store, self._withdraw, None)
                if self._watch.gone():
                    return True, _withdrawn(self._store, self._withdraw, NO_WORKER)
                self._pop = PendingPop(self._client, self._key, self._slice_s)

    def abandon(self) -> None:
        """Stop waiting (its caller is going): the connection is dropped, its pop with it."""
        self._pop.abandon()


class Started:
    """A sync call begun (Dispatcher.start): `result(wait_s)` is its result once the reply
    came (`end` turns the reply into it, raising what a failed call raises), else None. A
    call made whole already carries its `reply`."""

    def __init__(self, end: Callable[[bytes | None], InvocationResult],
                 call: LaneCall | None = None, reply: bytes | None = None) -> None:
        self._end: Callable[[bytes | None], InvocationResult] | None = end
        self._call, self._reply = call, reply
        self._result: InvocationResult | None = None

    def result(self, wait_s: float | None) -> InvocationResult | None:
        if self._call is not None:
            done, reply = self._call.poll(wait_s)
            if not done:
                return None
            self._call, self._reply = None, reply
        if self._end is not None:
            end, self._end = self._end, None
            self._result = end(self._reply)
        return self._result

    def abandon(self) -> None:
        if self._call is not None:
            self._call.abandon()
            self._call = None


def _withdrawn(store: redis.Redis[bytes], withdraw: Command | None,
               reason: bytes | None) -> bytes | None:
    if withdraw is not None:
        with redis_errors("taking a sync request back", store):
            store.execute_command(*withdraw)
    return reason
