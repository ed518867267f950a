"""The walls through a real fleet: a probe function checks each wall from inside a worker.

The router and worker are real processes on the shared RabbitMQ and Redis; the probe
(support/handlers/walls/probe.py) returns a verdict per wall. A second tenant looks for the
first one's files and processes. Needs root (the worker builds the walls as root); CI is root.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.fleet import Fleet
from support.runtimes import code_dir, need_node

pytestmark = pytest.mark.slow

PROBE = Path(__file__).resolve().parents[1] / "support" / "handlers" / "walls"
WALLS = ("tmp", "shm", "host_dirs", "processes", "signals", "control_plane", "outbound",
         "credentials")


@pytest.fixture
def walled_fleet(fleet: Fleet) -> Fleet:
    if os.geteuid() != 0:
        pytest.skip("the walls need a root worker (private mounts, own uids, nftables)")
    fleet.worker(slots=2)
    fleet.router()
    return fleet


@pytest.fixture
def postgres_like() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield int(server.getsockname()[1])


def _address(url: str, default: int) -> list[object]:
    parts = urlsplit(url)
    return [parts.hostname or "127.0.0.1", parts.port or default]


def _probe(fleet: Fleet, name: str, event: dict[str, object]) -> dict[str, object]:
    reply = fleet.client.invoke(name, event)
    assert reply.status_code == 200 and reply.function_error is None, reply.payload
    return reply.payload


def test_a_probe_through_a_worker_finds_every_wall_standing(
    walled_fleet: Fleet, amqp_url: str, redis_url: str, postgres_like: int
) -> None:
    fleet = walled_fleet
    fleet.client.create_function("probe", code=PROBE, handler="probe.handler", timeout_s=30)
    redis_at, amqp_at = _address(redis_url, 6379), _address(amqp_url, 5672)
    workers = [p.pid for p in fleet.procs]
    event = {"deny": [redis_at, amqp_at, ["127.0.0.2", redis_at[1]]],
             "allow": [["127.0.0.1", postgres_like]], "outsider_pid": workers[0]}
    seen = _probe(fleet, "probe", event)["walls"]
    verdicts = {wall: seen[wall]["ok"] for wall in WALLS}
    assert verdicts == dict.fromkeys(WALLS, True), seen


def test_a_second_tenant_finds_neither_the_first_ones_files_nor_its_processes(
    walled_fleet: Fleet,
) -> None:
    fleet = walled_fleet
    for name in ("tenant-a", "tenant-b"):
        fleet.client.create_function(name, code=PROBE, handler="probe.handler", timeout_s=30)
    first = _probe(fleet, "tenant-a", {"leave": "tenant-a-secret"})
    peek = {"peek_files": ["/tmp/tenant-a-secret", "/dev/shm/tenant-a-secret"],
            "peek_pids": [first["pid"]]}
    second = _probe(fleet, "tenant-b", peek)
    assert second["uid"] != first["uid"]
    assert second["walls"]["other_tenant"] == {"ok": True, "found": []}
    assert second["walls"]["tmp"]["seen"] == []
    # The first tenant, still warm, keeps its own /tmp
    again = _probe(fleet, "tenant-a", {"peek_files": ["/tmp/tenant-a-secret"]})
    assert again["walls"]["other_tenant"]["found"] == ["/tmp/tenant-a-secret"]


def test_a_function_with_network_none_reaches_nothing(
    walled_fleet: Fleet, postgres_like: int
) -> None:
    fleet = walled_fleet
    fleet.client.create_function("offline", code=PROBE, handler="probe.handler", timeout_s=30,
                                 network="none")
    assert fleet.client.get_function("offline").network == "none"
    seen = _probe(fleet, "offline", {"allow": [["127.0.0.1", postgres_like]]})["walls"]
    assert not seen["outbound"]["ok"]
    assert seen["tmp"]["ok"] and seen["processes"]["ok"]


def test_a_functions_ephemeral_storage_caps_its_tmp_through_a_worker(walled_fleet: Fleet) -> None:
    fleet = walled_fleet
    fleet.client.create_function("filler", code=PROBE, handler="fill.handler", timeout_s=120,
                                 memory_mb=128, ephemeral_storage_mb=1024)
    assert fleet.client.get_function("filler").ephemeral_storage_mb == 1024
    seen = _probe(fleet, "filler", {})
    assert seen["errno"] == 28  # ENOSPC, not an out-of-memory kill of a 128 MB function
    assert 990 <= seen["wrote_mb"] <= 1024 and 1000 <= seen["size_mb"] <= 1040


NODE_REACH = """
const net = require("net");
exports.handler = async (event) => {
  const seen = {};
  for (const [host, port] of event.targets) {
    seen[host + ":" + port] = await new Promise((done) => {
      const s = net.connect(port, host);
      s.setTimeout(3000);
      s.on("connect", () => { s.destroy(); done("connected"); });
      s.on("error", (e) => done(e.code));
      s.on("timeout", () => { s.destroy(); done("timeout"); });
    });
  }
  return seen;
};
"""


def test_a_node_function_with_network_none_is_served_and_reaches_nothing(
    walled_fleet: Fleet, redis_url: str, postgres_like: int
) -> None:
    need_node()
    fleet = walled_fleet
    redis_at = _address(redis_url, 6379)
    targets = [redis_at, ["127.0.0.1", postgres_like], ["203.0.113.7", 80]]
    with code_dir({"index.js": NODE_REACH}, executable=()) as path:
        fleet.client.create_function("offline-node", code=path, handler="index.handler",
                                     runtime="nodejs20.x", memory_mb=256, timeout_s=30,
                                     network="none")
    seen = _probe(fleet, "offline-node", {"targets": targets})
    assert seen == {f"{redis_at[0]}:{redis_at[1]}": "ECONNREFUSED",
                    f"127.0.0.1:{postgres_like}": "ECONNREFUSED",
                    "203.0.113.7:80": "ENETUNREACH"}
