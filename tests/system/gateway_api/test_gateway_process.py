"""The gateway as a process: `--workers N`, and the gateway `warren up` runs."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from support.fleet import Fleet
from support.gatewaykit import GatewayKit, fetch, free_port, unique_name

pytestmark = pytest.mark.slow


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_workers_serve_one_socket_from_several_processes(module_fleet: Fleet) -> None:
    # Given a gateway with two worker processes
    gw = GatewayKit(module_fleet, None, "--workers", "2")
    try:
        module_fleet.wait_for(lambda: len(children(gw.proc.pid)) >= 2, what="two gateway workers")
        # When it is called many times over fresh connections, then every call is served
        name = unique_name("multi")
        gw.create(name)
        lam = gw.client()
        for n in range(10):
            out = lam.invoke(FunctionName=name, Payload=json.dumps({"n": n}))
            assert json.loads(out["Payload"].read())["event"] == {"n": n}
        assert all(fetch(gw.endpoint + "/readyz")[0] == 200 for _ in range(10))
    finally:
        gw.close()
        assert module_fleet.stop(gw.proc) == 0


def test_warren_up_runs_a_gateway_and_prints_its_endpoint(fleet: Any) -> None:
    # Given `warren up` with its gateway on a port of the test's choosing
    port = free_port()
    up = fleet.spawn("up", "--slots", "1", env={"WARREN_GATEWAY_PORT": str(port)})
    endpoint = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return fetch(endpoint + "/readyz")[0] == 200
        except OSError:
            return False

    fleet.wait_for(ready, what="warren up's gateway")
    fleet.wait_for(lambda: len(fleet.workers()) == 1, what="warren up's worker")
    # Then it says where the gateway listens, and a function URL works through it
    log = b"".join(p.read_bytes() for p in fleet.logdir.glob("up-*.log"))
    assert f"warren gateway: {endpoint}".encode() in log
    fleet.function("echo", handler="app.echo")
    made = fleet.cli("url", "create", "echo", "--auth-type", "NONE", "--public-url", endpoint,
                     "--output", "json")
    assert made.returncode == 0, made.stderr
    status, _, body = fetch(json.loads(made.stdout)["FunctionUrl"] + "hi?x=1")
    assert status == 200 and json.loads(body)["event"]["rawPath"] == "/hi"
    # And it drains with the rest of the tree
    up.send_signal(signal.SIGTERM)
    assert up.wait(timeout=60) == 0
