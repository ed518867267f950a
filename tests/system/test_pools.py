"""Worker pools: a function runs only on the workers of its pool, sync and async."""

from __future__ import annotations

import json

import pytest
from support.fleet import CODE, Fleet

pytestmark = pytest.mark.slow


def completed_by_pool(fleet: Fleet) -> dict[str, int]:
    return {w["pool"]: int(w["completed"]) for w in fleet.worker_status()}


def test_functions_run_only_on_the_workers_of_their_pool(fleet: Fleet) -> None:
    # Given a function in the default pool, one in pool "big", and a worker for each pool
    fleet.function("small", handler="app.echo")
    big = fleet.function("large", handler="app.echo", pool="big")
    assert big.pool == "big"
    fleet.worker(slots=1)
    fleet.worker(slots=1, pool="big")
    fleet.router()
    # When each is invoked 5 times sync and 10 times async
    for n in range(5):
        assert fleet.client.invoke("small", {"n": n}).payload["event"] == {"n": n}
        assert fleet.client.invoke("large", {"n": n}).payload["event"] == {"n": n}
    fleet.client.invoke_many("small", [{"n": n} for n in range(10)])
    fleet.client.invoke_many("large", [{"n": n} for n in range(10)])
    # Then each pool's worker ran exactly its own function's 15 invocations
    fleet.wait_for(
        lambda: completed_by_pool(fleet) == {"default": 15, "big": 15},
        timeout=30,
        what=f"15 completions per pool (have {completed_by_pool(fleet)})",
    )
    # And status shows the pool of each function and the pool's work queue
    out = fleet.cli("status", "--output", "json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    pools = {f["name"]: f["pool"] for f in status["functions"]}
    assert pools == {"small": "default", "large": "big"}
    assert fleet.keys.work_queue("big") in {q["name"] for q in status["queues"]}


def test_pool_flag_on_the_cli_and_a_bad_pool_name(fleet: Fleet) -> None:
    code = str(CODE)
    out = fleet.cli("function", "create", "p1", "--code", code, "--handler", "app.echo",
                    "--pool", "gpu", "--output", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["pool"] == "gpu"
    out = fleet.cli("function", "update", "p1", "--pool", "default", "--output", "json")
    assert json.loads(out.stdout)["pool"] == "default"
    out = fleet.cli("function", "create", "p2", "--code", code, "--handler", "app.echo",
                    "--pool", "no spaces")
    assert out.returncode != 0
    assert b"pool 'no spaces' is invalid" in out.stderr and b"Traceback" not in out.stderr
