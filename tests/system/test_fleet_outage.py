"""The fleet when its broker or Redis goes away: clear errors, reconnection, nothing lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from support.fleet import Fleet, make_fleet
from support.proxy import CuttableProxy

from warren.client import Client
from warren.errors import Unavailable
from warren.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def fleet(amqp_url: str, redis_url: str, unique: str, tmp_path: Path) -> Iterator[Fleet]:
    # Chunks of 4: a worker holds at most two of them, the rest wait in the queue.
    f = make_fleet(amqp_url, redis_url, unique, tmp_path, WARREN_ROUTER_CHUNK="4")
    yield f
    f.close()


def through(proxy: CuttableProxy, url: str) -> str:
    """`url` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@127.0.0.1:{proxy.port}" if auth else f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def upstream(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def completed_ns(fleet: Fleet, stream: str) -> list[int]:
    return sorted({r["responsePayload"]["n"] for r in fleet.stream_records(stream)})


@pytest.mark.parametrize("service", ["rabbitmq", "redis"])
def test_a_worker_rides_out_an_outage_and_nothing_is_lost(fleet: Fleet, service: str) -> None:
    # Given a worker that reaches RabbitMQ (or Redis) through a proxy the test can cut
    url_var = "WARREN_AMQP_URL" if service == "rabbitmq" else "WARREN_REDIS_URL"
    proxy = CuttableProxy(upstream(fleet.env[url_var], 5672 if service == "rabbitmq" else 6379))
    try:
        done = f"{fleet.prefix}-done"
        fleet.function("slow", handler="app.span", on_success=f"redis+stream:///{done}")
        fleet.worker(slots=2, env={url_var: through(proxy, fleet.env[url_var])})
        fleet.router()
        # When 40 invocations of a 100 ms handler run and the link is cut for 3 s mid-run
        fleet.client.invoke_many("slow", [{"sleep": 0.1, "n": n} for n in range(40)])
        fleet.wait_for(lambda: len(completed_ns(fleet, done)) >= 6, timeout=30, what="a start")
        proxy.cut()
        time.sleep(3)
        assert len(completed_ns(fleet, done)) < 40  # the cut happened mid-run
        proxy.restore()
        # Then every invocation completes (redelivered ones may run twice, none is lost)
        fleet.wait_for(
            lambda: completed_ns(fleet, done) == list(range(40)), timeout=90, what="all 40"
        )
        assert all(p.poll() is None for p in fleet.procs)  # the worker reconnected, not died
        # And the same worker answers sync calls again
        fleet.wait_for(lambda: _answers(fleet), timeout=30, what="a sync answer")
    finally:
        proxy.close()


def _answers(fleet: Fleet) -> bool:
    try:
        return fleet.client.invoke("slow", {"sleep": 0, "n": -1}).status_code == 200
    except Unavailable:
        return False


@pytest.mark.parametrize("reply", ["amqp", "redis"])
def test_a_sync_caller_whose_broker_goes_away_gets_a_clear_error_then_recovers(
    fleet: Fleet, reply: str
) -> None:
    # (RabbitMQ's sync lane, with either reply path: direct reply-to, or
    # WARREN_SYNC_REPLY=redis; the Redis lane needs no broker: test_caller_faults.py)
    fleet.function("slow", handler="app.span", timeout_s=10)
    fleet.worker(slots=1)
    proxy = CuttableProxy(upstream(fleet.env["WARREN_AMQP_URL"], 5672))
    env = {**fleet.env, "WARREN_AMQP_URL": through(proxy, fleet.env["WARREN_AMQP_URL"]),
           "WARREN_SYNC_LANE": "amqp", "WARREN_SYNC_REPLY": reply}
    caller = Client.from_settings(Settings.from_environ(env))
    try:
        assert caller.invoke("slow", {"sleep": 0}).status_code == 200
        # When the caller's broker connection drops while a call waits for its reply: over
        # direct reply-to the reply is lost with it (a clear error); over Redis the request,
        # already at the worker, still runs and its reply still comes (the caller waits up to
        # the function's timeout for it: giving up at once would only make it retry while the
        # first request runs, two runs)
        timer = __import__("threading").Timer(0.5, proxy.cut)
        timer.start()
        if reply == "amqp":
            with pytest.raises(Unavailable, match="RabbitMQ"):
                caller.invoke("slow", {"sleep": 2})
        else:
            assert caller.invoke("slow", {"sleep": 2}).status_code == 200
        timer.join()
        # And while it stays down, a call fails at once with the same clear error
        started = time.monotonic()
        with pytest.raises(Unavailable, match="RabbitMQ"):
            caller.invoke("slow", {"sleep": 0})
        assert time.monotonic() - started < 15
        # Then once it is back, the same client reconnects and calls go through
        proxy.restore()
        assert caller.invoke("slow", {"sleep": 0}).status_code == 200
    finally:
        caller.close()
        proxy.close()
