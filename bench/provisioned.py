"""Provisioned concurrency benchmark: the first request after a deploy, and a burst of 2N calls.

A real fleet (two `warren worker` processes of 2 slots, RabbitMQ and Redis as configured by
WARREN_TEST_AMQP_URL / WARREN_TEST_REDIS_URL or the local defaults). Each round deploys a fresh
function (new code, so nothing is cached or warm), publishes version 1 and then, without
provisioned concurrency or with N = 2 (after waiting for READY), times from the client:
the first sync invoke of version 1, then a burst of 2N concurrent invokes (released together).
The handler's init imports a few standard modules and sleeps INIT_MS, standing in for an SDK
client or a model loaded at module level. Rounds alternate the two modes (the machine is
shared, its load drifts). Writes bench/results/provisioned.json. Run from the repository root:
    python bench/provisioned.py [--rounds 10] [--init-ms 300]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from support.fleet import Fleet  # noqa: E402

from warren.client import Client  # noqa: E402

RESULTS = os.path.join(ROOT, "bench", "results", "provisioned.json")
N = 2
CODE = """
import decimal, email.mime.text, http.client, json, time
time.sleep({init_s})
ROUND = {round!r}

def handler(event, context):
    return {{"round": ROUND}}
"""


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(ms: list[float]) -> dict[str, float]:
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 1),
            "p90_ms": round(percentile(ms, 90), 1), "max_ms": round(max(ms), 1),
            "mean_ms": round(sum(ms) / len(ms), 1)}


def timed_invoke(client: Client, name: str) -> tuple[float, bool]:
    started = time.perf_counter()
    out = client.invoke(name, {}, qualifier="1", log_tail=True)
    took = (time.perf_counter() - started) * 1000
    assert out.function_error is None, out.payload
    return took, "Init Duration" in out.logs


def burst(fleet: Fleet, name: str, clients: list[Client]) -> list[tuple[float, bool]]:
    gate = threading.Barrier(len(clients))
    got: list[tuple[float, bool]] = []

    def one(client: Client) -> None:
        gate.wait()
        got.append(timed_invoke(client, name))

    threads = [threading.Thread(target=one, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return got


def run_round(fleet: Fleet, clients: list[Client], code_root: Path, i: int, mode: str,
              init_s: float) -> dict[str, Any]:
    name = f"bench{i}{mode[0]}"
    code = code_root / name
    code.mkdir(mode=0o755)
    (code / "app.py").write_text(CODE.format(init_s=init_s, round=f"{i}-{mode}"))
    (code / "app.py").chmod(0o644)
    fleet.client.create_function(name, code=code, handler="app.handler")
    fleet.client.publish_version(name)
    ready_ms = None
    if mode == "provisioned":
        started = time.perf_counter()
        fleet.client.provision(name, "1", N)
        fleet.wait_for(
            lambda: (fleet.client.provisioned_status(name, "1") or [{}])[0].get("state")
            == "READY", timeout=120, what="READY")
        ready_ms = (time.perf_counter() - started) * 1000
    first_ms, first_init = timed_invoke(fleet.client, name)
    time.sleep(0.3)  # the first call's sandbox is idle again before the burst
    calls = burst(fleet, name, clients)
    if mode == "provisioned":
        fleet.client.provision(name, "1", None)
    fleet.client.delete_function(name)
    return {"mode": mode, "ready_ms": ready_ms, "first_ms": first_ms, "first_init": first_init,
            "burst_ms": [c[0] for c in calls], "burst_inits": sum(c[1] for c in calls)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--init-ms", type=float, default=300.0)
    args = parser.parse_args()
    amqp = os.environ.get("WARREN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    redis_url = os.environ.get("WARREN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    logs = Path(tempfile.mkdtemp(prefix="warren-bench-prov-"))
    code_root = Path("/var/tmp/warren-bench") / uuid.uuid4().hex[:8]
    code_root.mkdir(parents=True, mode=0o755)
    fleet = Fleet(amqp, redis_url, f"bprov{uuid.uuid4().hex[:8]}", logs)
    clients: list[Client] = []
    rounds: list[dict[str, Any]] = []
    try:
        fleet.worker(slots=2)
        fleet.worker(slots=2)
        clients = [Client.from_settings(fleet.settings) for _ in range(2 * N)]
        for client in clients:  # connections up before anything is timed
            client.invoker  # noqa: B018
        for i in range(args.rounds):
            modes = ("on-demand", "provisioned") if i % 2 == 0 else ("provisioned", "on-demand")
            for mode in modes:
                rounds.append(run_round(fleet, clients, code_root, i, mode, args.init_ms / 1000))
                print(json.dumps({k: v for k, v in rounds[-1].items() if k != "burst_ms"}))
    finally:
        for client in clients:
            client.close()
        fleet.close()
        shutil.rmtree(code_root, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)
    results: dict[str, Any] = {
        "what": "first sync invoke of a freshly deployed version 1, then 2N concurrent invokes",
        "n_provisioned": N, "workers": "2 x 2 slots", "init_ms": args.init_ms,
        "rounds": args.rounds, "host": platform.node(), "cpus": os.cpu_count(),
        "loadavg_1_5_15_at_end": None, "modes": {},
    }
    for mode in ("on-demand", "provisioned"):
        mine = [r for r in rounds if r["mode"] == mode]
        results["modes"][mode] = {
            "first_request": summary([r["first_ms"] for r in mine]),
            "first_request_paid_init": sum(r["first_init"] for r in mine),
            "burst_2n": summary([ms for r in mine for ms in r["burst_ms"]]),
            "burst_2n_slowest_per_round": summary([max(r["burst_ms"]) for r in mine]),
            "burst_calls_that_paid_init": sum(r["burst_inits"] for r in mine),
            "burst_calls": sum(len(r["burst_ms"]) for r in mine),
        }
        if mode == "provisioned":
            results["modes"][mode]["time_to_ready"] = summary([r["ready_ms"] for r in mine])
    results["loadavg_1_5_15_at_end"] = os.getloadavg()
    with open(RESULTS, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(json.dumps(results["modes"], indent=2))


if __name__ == "__main__":
    main()
