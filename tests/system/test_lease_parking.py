"""Sync leases a caller parks between its calls: reused without Redis, given back when idle."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.fleet import Fleet, make_fleet

from warren.client import Client
from warren.errors import TooManyRequests
from warren.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def fleet(amqp_url: str, redis_url: str, unique: str, tmp_path: Path) -> Iterator[Fleet]:
    f = make_fleet(amqp_url, redis_url, unique, tmp_path)
    f.function("echo", handler="app.echo")
    f.function("solo", handler="app.echo", concurrency=1)
    f.worker(slots=2)
    yield f
    f.close()


def client(fleet: Fleet, idle_ms: int) -> Client:
    env = {**fleet.env, "WARREN_SYNC_LEASE_IDLE_MS": str(idle_ms)}
    return Client.from_settings(Settings.from_environ(env))


def leases(fleet: Fleet, function: str | None = None) -> list[bytes]:
    key = f"{fleet.prefix}:sem:" + (f"fn:{function}" if function else "pool")
    return list(fleet.redis.zrange(key, 0, -1))


def test_a_sequential_caller_reuses_one_lease_and_gives_it_back_once_idle(fleet: Fleet) -> None:
    caller = client(fleet, idle_ms=400)
    try:
        seen = set()
        for n in range(20):
            assert caller.invoke("echo", {"n": n}).payload["event"] == {"n": n}
            held = leases(fleet)
            # one lease, the same one: the worker left it alone and no call took another
            assert len(held) == 1
            seen.update(held)
        assert len(seen) == 1 and next(iter(seen)).startswith(b"echo|")
        parked_at = time.monotonic()
        fleet.wait_for(lambda: leases(fleet) == [], timeout=5, what="the idle lease released")
        assert time.monotonic() - parked_at >= 0.3  # kept while idle for less than 400 ms
    finally:
        caller.close()


def test_close_releases_a_parked_lease_at_once(fleet: Fleet) -> None:
    caller = client(fleet, idle_ms=10_000)
    caller.invoke("echo", {})
    assert len(leases(fleet)) == 1
    caller.close()
    assert leases(fleet) == []


def test_with_parking_off_the_worker_releases_every_lease(fleet: Fleet) -> None:
    caller = client(fleet, idle_ms=0)
    try:
        for n in range(5):
            caller.invoke("echo", {"n": n})
        fleet.wait_for(lambda: leases(fleet) == [], timeout=5, what="the worker's release")
        assert caller.invoke("echo", {}).status_code == 200
    finally:
        caller.close()


def test_a_function_at_its_limit_never_keeps_an_idle_callers_lease(fleet: Fleet) -> None:
    # Reserved concurrency 1: the only slot would be blocked by a parked lease, so none is
    # parked and two callers taking turns never see a 429 (each waits for the other's reply).
    first, second = client(fleet, idle_ms=10_000), client(fleet, idle_ms=10_000)
    try:
        for n in range(10):
            for caller in (first, second):
                for attempt in range(50):  # the worker's release lands just after the reply
                    try:
                        assert caller.invoke("solo", {"n": n}).status_code == 200
                        break
                    except TooManyRequests:
                        assert attempt < 49, "the slot never came back"
                        time.sleep(0.01)
        fleet.wait_for(lambda: leases(fleet, "solo") == [], timeout=5, what="no lease left")
    finally:
        first.close()
        second.close()


def test_concurrent_callers_each_park_their_own_lease(fleet: Fleet) -> None:
    callers = [client(fleet, idle_ms=10_000) for _ in range(3)]
    errors: list[BaseException] = []

    def run(caller: Client, tag: int) -> None:
        try:
            for n in range(10):
                assert caller.invoke("echo", {"t": tag, "n": n}).payload["event"]["n"] == n
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c, i)) for i, c in enumerate(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert len(leases(fleet)) == 3  # one parked lease per caller, not one per call
    finally:
        for caller in callers:
            caller.close()
    assert leases(fleet) == []


def test_a_program_that_never_closes_its_client_gives_the_lease_back_at_exit(
    fleet: Fleet,
) -> None:
    script = (
        "import sys\n"
        "from warren.client import Client\n"
        "from warren.settings import Settings\n"
        "import os\n"
        "client = Client.from_settings(Settings.from_environ(os.environ))\n"
        "assert client.invoke('echo', {}).status_code == 200\n"
        "print(len(client._invoker.parking._parked))\n"  # parked, and never closed
    )
    env = {**fleet.env, "WARREN_SYNC_LEASE_IDLE_MS": "10000"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == b"1"
    assert leases(fleet) == []
