"""Completion and Worker built in-process on the in-memory broker (Redis and sandboxes are real)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.memory_fleet import queued, take, wait_for

from warren.aws import new_request_id
from warren.invocation import (
    EVENT,
    REQUEST_RESPONSE,
    Invocation,
    InvocationResult,
    decode_chunk,
    encode_chunk,
)
from warren.ports import Delivery
from warren.store.codes import CodeStore
from workers.codecache import CodeCache
from workers.completion import Chunk
from workers.executor import Executor, Run
from workers.pool import SandboxPool, WarmSandbox
from workers.worker import Worker, WorkerConfig

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
