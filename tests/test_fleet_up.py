"""`warren up` as one process tree, and `warren logs --follow`, as real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fleet_handlers.harness import REPO, Fleet


def children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_up_runs_router_and_worker_and_stops_them_all(fleet: Fleet) -> None:
    fleet.function("echo", handler="app.echo", on_success=f"redis+stream:///{fleet.prefix}-ok")
    up = fleet.spawn("up", "--slots", "1")
    try:
        fleet.wait_for(lambda: len(fleet.workers()) == 1, what="the worker of warren up")
        out = fleet.cli("invoke", "echo", "--payload", '{"via": "up"}')
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["event"] == {"via": "up"}
        fleet.client.invoke("echo", {}, invocation_type="Event")  # through its router
        fleet.wait_for(lambda: fleet.redis.xlen(f"{fleet.prefix}-ok") == 1, what="async via up")
        kids = children(up.pid)
        assert len(kids) >= 2
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=60)
    assert code == 0
    time.sleep(0.5)
    assert all(not Path(f"/proc/{pid}").exists() for pid in kids)


def test_logs_follow_prints_new_invocations(fleet: Fleet) -> None:
    fleet.function("echo", handler="app.echo")
    fleet.worker(slots=1)
    follower = subprocess.Popen(
        [sys.executable, "-m", "warren", "logs", "echo", "--follow"],
        env=fleet.env,
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.5)
        result = fleet.client.invoke("echo", {"follow": 1})
        os.set_blocking(follower.stdout.fileno(), False)  # type: ignore[union-attr]
        seen = b""
        deadline = time.monotonic() + 20
        while f"REPORT RequestId: {result.request_id}".encode() not in seen:
            assert time.monotonic() < deadline, seen
            chunk = follower.stdout.read()  # type: ignore[union-attr]
            seen += chunk or b""
            time.sleep(0.1)
        assert f"START RequestId: {result.request_id}".encode() in seen
    finally:
        fleet.stop(follower, signal.SIGINT, timeout=10)
        follower.stdout.close()  # type: ignore[union-attr]
        follower.stderr.close()  # type: ignore[union-attr]
