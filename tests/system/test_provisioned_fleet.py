"""Provisioned concurrency through a real fleet: ready ahead of traffic, spread, spilled, healed."""

from __future__ import annotations

import json
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from support.fleet import Fleet
from support.layers import tree

from warren.client import Client

pytestmark = pytest.mark.slow

CODE = """
import os, socket, time
INIT_PID = os.getpid()
time.sleep(0.2)  # an init worth paying ahead of traffic
if os.environ.get("BOOM"):
    raise RuntimeError("init boom")

def handler(event, context):
    port = event.get("barrier")
    if port:  # every caller of a burst arrives before any of them returns (the host's files
        # are read-only to a sandbox: the barrier is a loopback service of the test's)
        with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
            conn.recv(1)
    return {"pid": os.getpid()}
"""


def view(fleet: Fleet, target: str) -> dict[str, Any]:
    name, qualifier = target.split(":")
    found = fleet.client.provisioned_status(name, qualifier)
    return found[0] if found else {}


def reports(fleet: Fleet) -> dict[str, dict[str, Any]]:
    out = {}
    for key in fleet.redis.scan_iter(f"{fleet.prefix}:provisioned:worker:*"):
        out[key.decode()] = {k.decode(): json.loads(v) for k, v in fleet.redis.hgetall(key).items()}
    return out


def test_provisioned_sandboxes_are_ready_before_traffic_spread_and_recreated_elsewhere(
    fleet: Fleet, tmp_path: Path
) -> None:
    # Given a published version behind an alias, and two workers
    fleet.client.create_function("warm", code=tree(tmp_path / "c", {"app.py": CODE}),
                                 handler="app.handler")
    fleet.client.publish_version("warm")
    fleet.client.create_alias("warm", "live", "1")
    first = fleet.worker(slots=2)
    fleet.worker(slots=2)
    # When two sandboxes are provisioned for the alias ($LATEST is refused)
    refused = fleet.cli("concurrency", "provision", "warm", "2")
    assert refused.returncode == 2 and b"not $LATEST" in refused.stderr
    made = fleet.cli("concurrency", "provision", "warm:live", "2")
    assert made.returncode == 0, made.stderr
    # Then the fleet reports them ready, one per worker
    fleet.wait_for(lambda: view(fleet, "warm:live").get("state") == "READY", timeout=60,
                   what="provisioned READY")
    got = view(fleet, "warm:live")
    assert (got["requested"], got["allocated"], got["ready"]) == (2, 2, 2)
    assert got["versions"] == ["1"]
    assert sorted(r["warm:live"]["allocated"] for r in reports(fleet).values()) == [1, 1]
    shown = json.loads(fleet.cli("function", "get", "warm:live", "--output", "json").stdout)
    assert shown["provisioned"][0]["state"] == "READY"
    status = json.loads(fleet.cli("status", "--output", "json").stdout)
    assert status["provisioned"][0]["ready"] == 2
    # And invocations of the alias pay no init; $LATEST (on demand) does
    for _ in range(4):
        out = fleet.client.invoke("warm", {}, qualifier="live", log_tail=True)
        assert out.function_error is None and "REPORT RequestId" in out.logs
        assert "Init Duration" not in out.logs
    cold = fleet.client.invoke("warm", {}, log_tail=True)
    assert "Init Duration" in cold.logs
    # When a worker dies, its share is recreated on the other
    first.send_signal(signal.SIGKILL)
    first.wait()

    def healed() -> bool:
        got = view(fleet, "warm:live")
        return got.get("state") == "READY" and got["allocated"] == 2 and len(reports(fleet)) == 1

    fleet.wait_for(healed, timeout=60, what="the dead worker's share recreated")
    assert [r["warm:live"]["ready"] for r in reports(fleet).values()] == [2]
    # When the alias moves to another version, the provisioned sandboxes follow it
    fleet.client.update_function("warm", env={"VERSION_TAG": "2"})
    fleet.client.publish_version("warm")
    fleet.client.update_alias("warm", "live", "2")
    fleet.wait_for(lambda: view(fleet, "warm:live").get("versions") == ["2"]
                   and view(fleet, "warm:live")["state"] == "READY", timeout=60,
                   what="the sandboxes of version 2")
    moved = fleet.client.invoke("warm", {}, qualifier="live", log_tail=True)
    assert moved.executed_version == "2" and "Init Duration" not in moved.logs
    # When the config is cleared, the sandboxes go and so does the report
    assert fleet.cli("concurrency", "provision", "warm:live", "--clear").returncode == 0
    fleet.wait_for(lambda: not reports(fleet), timeout=30, what="the report to go")
    assert fleet.client.provisioned_status() == []


def test_a_burst_past_n_spills_over_to_on_demand_and_a_failing_init_is_reported(
    fleet: Fleet, tmp_path: Path
) -> None:
    fleet.client.create_function("burst", code=tree(tmp_path / "c", {"app.py": CODE}),
                                 handler="app.handler")
    fleet.client.publish_version("burst")
    fleet.worker(slots=3)
    fleet.client.provision("burst", "1", 1)
    fleet.wait_for(lambda: view(fleet, "burst:1").get("state") == "READY", timeout=60,
                   what="provisioned READY")
    burst_through(fleet)
    # A version whose init fails is FAILED, with the reason
    fleet.client.update_function("burst", env={"BOOM": "1"})
    fleet.client.publish_version("burst")
    fleet.client.provision("burst", "2", 1)
    fleet.wait_for(lambda: view(fleet, "burst:2").get("state") == "FAILED", timeout=60,
                   what="provisioned FAILED")
    assert "init boom" in view(fleet, "burst:2")["reason"]
    assert view(fleet, "burst:1")["state"] == "READY"


def burst_through(fleet: Fleet) -> None:
    results: list[Any] = []
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def call() -> None:
        with Client.from_settings(fleet.settings) as client:
            results.append(client.invoke("burst", {"barrier": port}, qualifier="1",
                                         log_tail=True))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    server.settimeout(60)
    arrived = [server.accept()[0] for _ in range(3)]  # all three handlers are running
    for conn in arrived:
        conn.sendall(b"g")
        conn.close()
    server.close()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 3 and all(r.function_error is None for r in results)
    inits = sorted("Init Duration" in r.logs for r in results)
    assert inits == [False, True, True]  # one provisioned, two spilled over to on-demand
