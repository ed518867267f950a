"""The router's loop built in-process on the in-memory broker (Redis is real)."""

from __future__ import annotations

import threading
import time

import orjson
from support.memory_fleet import THROTTLE_MS, queued, take, wait_for

from warren.aws import new_request_id
from warren.invocation import EVENT, Invocation, encode_chunk

# -- Router.route --------------------------------------------------------------------------------


def test_route_admits_up_to_the_limit_holds_the_rest_then_defers_it_and_acks(world, code):
    # Given a function limited to 2 and a batch of 3 invocations on the async queue
    spec = world.registry.create_function("f", code=code, handler="app.handler", concurrency=2)
    broker = world.connect()
    broker.declare()
    invs = [Invocation(new_request_id(), spec, b'{"n": %d}' % n, EVENT) for n in range(3)]
    broker.publish(world.keys.async_queue, encode_chunk(invs))
    router = world.router()

    # When the router routes that batch
    router.route(broker, take(broker, world.keys.async_queue, 1))

    # Then two are forwarded under leases, the third is held in the router, its message unacked
    forwarded = queued(world, world.keys.work_queue())
    assert [i.request_id for i in forwarded] == [i.request_id for i in invs[:2]]
    assert all(i.lease_key == world.semaphore.function_key("f") for i in forwarded)
    assert world.semaphore.in_flight() == {"f": 2}
    deferred_queue = world.keys.delay_queue(THROTTLE_MS)
    assert queued(world, deferred_queue) == []
    assert (router.forwarded, router.deferred) == (2, 0)

    # And once its hold is over with no lease freed, it waits in the delay queue, and the
    # message is acked
    time.sleep(router.hold_s)
    router.route(broker, [])
    assert [i.request_id for i in queued(world, deferred_queue)] == [invs[2].request_id]
    assert (router.forwarded, router.deferred) == (2, 1)
    broker.close()  # acked: nothing comes back to the async queue
    assert world.server.ready(world.keys.async_queue) == []


def test_a_held_invocation_runs_as_soon_as_a_lease_frees_up_not_after_a_delay(world, code):
    spec = world.registry.create_function("h", code=code, handler="app.handler", concurrency=1)
    broker = world.connect()
    broker.declare()
    first, second = (Invocation(new_request_id(), spec, b"{}", EVENT) for _ in range(2))
    broker.publish(world.keys.async_queue, encode_chunk([first]))
    broker.publish(world.keys.async_queue, encode_chunk([second]))
    router = world.router()
    router.route(broker, take(broker, world.keys.async_queue, 2))
    [running] = queued(world, world.keys.work_queue())
    assert running.request_id == first.request_id

    # When the first run's lease is released within the hold
    assert running.lease_key is not None
    world.semaphore.release(running.lease_key, [running.lease_id])
    router.route(broker, [])

    # Then the second is forwarded at once, nothing was deferred, and both messages are acked
    assert [i.request_id for i in queued(world, world.keys.work_queue())] == [
        first.request_id, second.request_id]
    assert queued(world, world.keys.delay_queue(THROTTLE_MS)) == []
    assert (router.forwarded, router.deferred) == (2, 0)
    broker.close()
    assert world.server.ready(world.keys.async_queue) == []


def test_a_burst_that_drains_stays_held_past_the_hold_while_its_function_gets_leases(
    world, code
):
    spec = world.registry.create_function("d", code=code, handler="app.handler", concurrency=1)
    broker = world.connect()
    broker.declare()
    invs = [Invocation(new_request_id(), spec, b"{}", EVENT) for _ in range(3)]
    broker.publish(world.keys.async_queue, encode_chunk(invs))
    router = world.router()
    router.route(broker, take(broker, world.keys.async_queue, 1))  # the first runs

    # When a lease frees up before the hold is over, and the hold then passes since arrival
    time.sleep(router.hold_s * 0.6)
    [first] = queued(world, world.keys.work_queue())
    assert first.lease_key is not None
    world.semaphore.release(first.lease_key, [first.lease_id])
    router.route(broker, [])  # the second runs: its function got a lease
    time.sleep(router.hold_s * 0.6)
    router.route(broker, [])

    # Then the third is still held (its function got a lease less than a hold ago), not
    # deferred; and with no lease for a whole hold, it goes to the delay queue
    assert [i.request_id for i in queued(world, world.keys.work_queue())] == [
        invs[0].request_id, invs[1].request_id]
    assert queued(world, world.keys.delay_queue(THROTTLE_MS)) == []
    assert router.deferred == 0
    time.sleep(router.hold_s)
    router.route(broker, [])
    assert [i.request_id for i in queued(world, world.keys.delay_queue(THROTTLE_MS))] == [
        invs[2].request_id]
    broker.close()
    assert world.server.ready(world.keys.async_queue) == []


def test_a_held_invocation_whose_event_age_runs_out_is_given_up_not_run(world, code):
    sink = f"{world.prefix}-failures"
    spec = world.registry.create_function(
        "old", code=code, handler="app.handler", concurrency=1, max_event_age_s=60,
        on_failure=f"redis+stream:///{sink}",
    )
    broker = world.connect()
    broker.declare()
    first = Invocation(new_request_id(), spec, b"{}", EVENT)
    late = Invocation(new_request_id(), spec, b"{}", EVENT, accepted_at=time.time() - 59.6)
    broker.publish(world.keys.async_queue, encode_chunk([first, late]))
    router = world.router()
    router.hold_s = 60.0  # held, not deferred: only its age can end the wait
    router.route(broker, take(broker, world.keys.async_queue, 1))

    # When it has waited in the router past its maximum event age and a lease frees up
    time.sleep(0.6)
    [running] = queued(world, world.keys.work_queue())
    assert running.lease_key is not None
    world.semaphore.release(running.lease_key, [running.lease_id])
    router.route(broker, [])

    # Then it is given up with EventAgeExceeded, not forwarded, and the message is acked
    assert [i.request_id for i in queued(world, world.keys.work_queue())] == [first.request_id]
    [(_, fields)] = world.conn.xrange(sink)
    record = orjson.loads(fields[b"record"])
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["requestId"] == late.request_id
    broker.close()
    assert world.server.ready(world.keys.async_queue) == []


def test_held_messages_take_at_most_half_the_prefetch(world, code):
    spec = world.registry.create_function("c", code=code, handler="app.handler", concurrency=1)
    broker = world.connect()
    broker.declare()
    for _ in range(5):
        broker.publish(world.keys.async_queue,
                       encode_chunk([Invocation(new_request_id(), spec, b"{}", EVENT)]))
    router = world.router()
    router.prefetch = 4

    router.route(broker, take(broker, world.keys.async_queue, 5))

    # One runs, two stay held (half the prefetch), the two newest go to the delay queue
    assert len(queued(world, world.keys.work_queue())) == 1
    assert len(queued(world, world.keys.delay_queue(THROTTLE_MS))) == 2
    assert (router.forwarded, router.deferred) == (1, 2)


def test_a_router_that_stops_defers_what_it_holds_instead_of_sending_it_back(world, code):
    spec = world.registry.create_function("s", code=code, handler="app.handler", concurrency=1)
    router, stop = world.router(), threading.Event()
    router.hold_s = 60.0  # held for as long as the router runs
    thread = threading.Thread(target=router.run, args=(stop,), daemon=True)
    thread.start()
    try:
        producer = world.connect("producer")
        producer.declare()
        invs = [Invocation(new_request_id(), spec, b"{}", EVENT) for _ in range(2)]
        producer.publish(world.keys.async_queue, encode_chunk(invs))
        wait_for(lambda: queued(world, world.keys.work_queue()))
        assert queued(world, world.keys.delay_queue(THROTTLE_MS)) == []
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    # The held one went to the delay queue; nothing returned to the async queue (no rerun of
    # the forwarded one).
    assert [i.request_id for i in queued(world, world.keys.delay_queue(THROTTLE_MS))] == [
        invs[1].request_id]
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


