"""Router, Completion and Worker built in-process on the in-memory broker (Redis is real)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from broker_adapters.memory import MemoryServer
from router.admission.semaphore import Semaphore
from router.destination import DestinationSet
from router.retry import RetryPolicy
from router.router import Router
from warren.aws import new_request_id
from warren.invocation import (
    EVENT,
    REQUEST_RESPONSE,
    Invocation,
    InvocationResult,
    decode_chunk,
    encode_chunk,
)
from warren.keys import Keys
from warren.ports import Broker, Delivery
from warren.settings import Settings
from warren.store.codes import CodeStore
from warren.store.logs import LogStore
from warren.store.registry import Registry
from workers.codecache import CodeCache
from workers.completion import Chunk, Completion
from workers.executor import Executor, Run
from workers.pool import SandboxPool, WarmSandbox
from workers.worker import Worker, WorkerConfig

THROTTLE_MS = 100


class World:
    """One fleet's stores on the test's Redis, and a memory broker for its messages."""

    def __init__(self, conn: Any, redis_url: str, prefix: str) -> None:
        self.conn = conn
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.registry = Registry(conn, CodeStore(conn, prefix), prefix=prefix)
        self.semaphore = Semaphore(conn, prefix, 1000, self.registry.reservations)
        self.settings = Settings.from_environ({"WARREN_PREFIX": prefix}, redis_url=redis_url)
        self.destinations = DestinationSet(self.settings, conn)
        self.policy = RetryPolicy(delays_s=(0.05,), throttle_delay_s=THROTTLE_MS / 1000)
        self.logs = LogStore(conn, prefix)
        self.server = MemoryServer()

    def connect(self, name: str = "test") -> Broker:
        return self.server.connect(self.keys, name)

    def completion(self) -> Completion:
        return Completion(self.conn, self.prefix, self.semaphore, self.logs, self.destinations,
                          self.policy)

    def router(self) -> Router:
        return Router(self.connect, self.semaphore, self.destinations, self.policy)


@pytest.fixture
def world(conn, redis_url, unique) -> Iterator[World]:
    w = World(conn, redis_url, f"test-loops-{unique}")
    yield w
    w.destinations.close()
    keys = list(conn.scan_iter(f"{w.prefix}*"))
    if keys:
        conn.delete(*keys)


def take(broker: Broker, queue: str, count: int, timeout_s: float = 10.0) -> list[Delivery]:
    """Consume `count` deliveries of `queue` (left unacked)."""
    got: list[Delivery] = []
    broker.consume(queue, got.append, prefetch=count)
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        assert time.monotonic() < deadline, f"{len(got)} of {count} deliveries"
        broker.process(0.05)
    return got


def wait_for(check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return value


def queued(world: World, queue: str) -> list[Invocation]:
    return [inv for body in world.server.ready(queue) for inv in decode_chunk(body)]


# -- Router.route --------------------------------------------------------------------------------


def test_route_admits_up_to_the_limit_defers_the_rest_and_acks_the_batch(world, code):
    # Given a function limited to 2 and a batch of 3 invocations on the async queue
    spec = world.registry.create_function("f", code=code, handler="app.handler", concurrency=2)
    broker = world.connect()
    broker.declare()
    invs = [Invocation(new_request_id(), spec, b'{"n": %d}' % n, EVENT) for n in range(3)]
    broker.publish(world.keys.async_queue, encode_chunk(invs))
    router = world.router()

    # When the router routes that batch
    router.route(broker, take(broker, world.keys.async_queue, 1))

    # Then two are forwarded under leases, one waits in the delay queue, the batch is acked
    forwarded = queued(world, world.keys.work_queue())
    assert [i.request_id for i in forwarded] == [i.request_id for i in invs[:2]]
    assert all(i.lease_key == world.semaphore.function_key("f") for i in forwarded)
    assert world.semaphore.in_flight() == {"f": 2}
    deferred_queue = world.keys.delay_queue(THROTTLE_MS)
    assert [i.request_id for i in queued(world, deferred_queue)] == [invs[2].request_id]
    assert (router.forwarded, router.deferred) == (2, 1)
    broker.close()  # acked: nothing comes back to the async queue
    assert world.server.ready(world.keys.async_queue) == []


def test_route_gives_up_on_a_disabled_function_and_records_why(world, code):
    sink = f"{world.prefix}-failures"
    spec = world.registry.create_function(
        "off", code=code, handler="app.handler", concurrency=0,
        on_failure=f"redis+stream:///{sink}",
    )
    broker = world.connect()
    broker.declare()
    broker.publish(world.keys.async_queue, encode_chunk([Invocation("r-1", spec, b"{}", EVENT)]))

    world.router().route(broker, take(broker, world.keys.async_queue, 1))

    assert queued(world, world.keys.work_queue()) == []
    [(_, fields)] = world.conn.xrange(sink)
    record = orjson.loads(fields[b"record"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["requestId"] == "r-1"


def test_route_dead_letters_what_it_cannot_decode_and_still_acks(world):
    broker = world.connect()
    broker.declare()
    broker.publish(world.keys.async_queue, b"not msgpack")

    world.router().route(broker, take(broker, world.keys.async_queue, 1))
    broker.close()

    dead = world.connect().get(world.keys.dead_queue)
    assert dead is not None and dead.body == b"not msgpack"
    assert dead.headers["x-warren-queue"] == world.keys.async_queue
    assert world.server.ready(world.keys.async_queue) == []


def test_the_router_loop_reconnects_after_an_outage_and_loses_nothing(world, code):
    spec = world.registry.create_function("g", code=code, handler="app.handler")
    router, stop = world.router(), threading.Event()
    thread = threading.Thread(target=router.run, args=(stop,), daemon=True)
    thread.start()
    try:
        producer = world.connect("producer")
        producer.declare()
        first = Invocation("before", spec, b"{}", EVENT)
        producer.publish(world.keys.async_queue, encode_chunk([first]))
        wait_for(lambda: queued(world, world.keys.work_queue()))

        # When the broker drops every connection, then more work arrives
        world.server.drop_connections()
        producer = world.connect("producer-again")
        producer.publish(world.keys.async_queue,
                         encode_chunk([Invocation("after", spec, b"{}", EVENT)]))

        # Then the router reconnects and forwards it too
        wait_for(lambda: len(queued(world, world.keys.work_queue())) == 2)
        assert [i.request_id for i in queued(world, world.keys.work_queue())] == [
            "before", "after"]
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


# -- Completion.finish ---------------------------------------------------------------------------


def _run(inv: Invocation, ok: bool = True, payload: bytes = b'{"ok": true}') -> Run:
    result = InvocationResult(200, function_error=None if ok else "Unhandled",
                              executed_version=inv.spec.version, request_id=inv.request_id,
                              raw_payload=payload)
    return Run(inv, result, ok, f"START RequestId: {inv.request_id}\nlogged\n")


def test_finish_replies_to_the_sync_caller_and_releases_the_lease(world, code):
    # Given a sync invocation under a lease, taken by a worker from a caller's request
    spec = world.registry.create_function("h", code=code, handler="app.handler")
    caller, worker = world.connect("caller"), world.connect("worker")
    caller.declare()
    replies: list[Delivery] = []
    caller.consume_replies(replies.append)
    inv = Invocation(new_request_id(), spec, b"{}", REQUEST_RESPONSE)
    [grant] = world.semaphore.acquire_many([("h", [inv.lease_id], spec.timeout_s)])
    inv = inv.leased(grant.key, grant.expires)
    caller.request(world.keys.work_queue(), encode_chunk([inv]), inv.request_id, 10_000)
    [delivery] = take(worker, world.keys.work_queue(), 1)
    chunk = Chunk(delivery, decode_chunk(delivery.body))
    assert chunk.done(0, _run(chunk.invocations[0]))
    assert world.semaphore.in_flight() == {"h": 1}

    # When the worker finishes the chunk
    world.completion().finish(chunk, worker)

    # Then the caller has its result, the lease is released, the log and counters are stored
    wait_for(lambda: caller.process(0.05) or replies)
    [reply] = replies
    assert reply.correlation_id == inv.request_id
    assert InvocationResult.decode(reply.body).payload == {"ok": True}
    assert world.semaphore.in_flight() == {}
    [entry] = world.logs.read("h")
    assert "logged" in entry.text
    assert world.conn.hget(world.keys.stats("h"), "invocations") == b"1"


def test_finish_sends_a_failed_event_round_a_delay_queue_to_try_again(world, code):
    spec = world.registry.create_function("e", code=code, handler="app.handler")
    broker = world.connect()
    broker.declare()
    inv = Invocation(new_request_id(), spec, b"{}", EVENT)
    broker.publish(world.keys.work_queue(), encode_chunk([inv]))
    [delivery] = take(broker, world.keys.work_queue(), 1)
    chunk = Chunk(delivery, [inv])
    chunk.done(0, _run(inv, ok=False, payload=b'{"errorMessage": "no"}'))

    world.completion().finish(chunk, broker)
    broker.ack(delivery.tag)

    # The retry policy's 50 ms later it is back on the async queue as attempt 2
    again = wait_for(lambda: queued(world, world.keys.async_queue))
    assert [(i.request_id, i.attempt) for i in again] == [(inv.request_id, 2)]
    assert world.conn.hget(world.keys.stats("e"), "errors") == b"1"


# -- Worker --------------------------------------------------------------------------------------


def _sandbox(spec: Any, code_dir: Path) -> WarmSandbox:
    from sandbox import Sandbox

    sandbox: WarmSandbox = Sandbox(
        str(code_dir), handler=spec.handler, memory_mb=spec.memory_mb, timeout_s=spec.timeout_s,
        env=dict(spec.env), function_name=spec.name, function_version=spec.version,
        invoked_function_arn=spec.arn,
    )
    return sandbox


@pytest.fixture
def cache_dir(world) -> Iterator[Path]:
    # Sandboxes run as unprivileged users: the code cache must sit in a world-traversable
    # place (pytest's tmp dirs are 0700).
    path = Path("/var/tmp/warren-test") / world.prefix
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_worker_runs_a_chunk_in_a_real_sandbox_replies_and_acks(world, code, cache_dir):
    # Given a worker with one slot on the memory broker
    spec = world.registry.create_function("echo", code=code, handler="app.handler")
    executor = Executor(
        SandboxPool(_sandbox, max_idle=2),
        CodeCache(CodeStore(world.conn, world.prefix), cache_dir),
        world.semaphore,
    )
    config = WorkerConfig(slots=1, cache_dir=cache_dir, heartbeat_s=60)
    worker = Worker(config, world.connect, executor, world.completion())
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        # When a caller sends a sync request
        caller = world.connect("caller")
        caller.declare()
        replies: list[Delivery] = []
        caller.consume_replies(replies.append)
        inv = Invocation(new_request_id(), spec, b'{"hello": "sandbox"}', REQUEST_RESPONSE)
        caller.request(world.keys.work_queue(), encode_chunk([inv]), inv.request_id, 30_000)

        # Then the handler's result comes back from a real sandbox
        wait_for(lambda: caller.process(0.05) or replies, timeout_s=60)
        result = InvocationResult.decode(replies[0].body)
        assert (result.status_code, result.function_error) == (200, None), result.payload
        assert result.payload == {"hello": "sandbox"}
        wait_for(lambda: worker.completed == 1)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    # And the chunk was acked: the drained worker's closed connection gave nothing back
    assert world.server.ready(world.keys.work_queue()) == []
