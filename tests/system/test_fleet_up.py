"""`warren up` as one process tree, and `warren logs --follow`, as real subprocesses."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.fleet import REPO, Fleet


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


def test_a_second_signal_stops_up_at_once_and_the_running_work_is_not_lost(fleet: Fleet) -> None:
    # Given `warren up` running an 8 s async invocation
    done = f"{fleet.prefix}-done"
    fleet.function("slow", handler="app.span", timeout_s=30, on_success=f"redis+stream:///{done}")
    up = fleet.spawn("up", "--slots", "1")
    fleet.wait_for(lambda: len(fleet.workers()) == 1, what="the worker of warren up")
    kids = children(up.pid)
    fleet.client.invoke("slow", {"sleep": 8}, invocation_type="Event")
    fleet.wait_for(
        lambda: any(w.get("busy") == "1" for w in fleet.worker_status()), what="the run to start"
    )
    # When it gets SIGTERM (it drains: still running a second later), then SIGTERM again
    up.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert up.poll() is None
    started = time.monotonic()
    up.send_signal(signal.SIGTERM)
    # Then it kills its children and exits 1 at once, saying what happened to the work
    assert up.wait(timeout=10) == 1
    fleet.procs.remove(up)  # its exit status is this test's to check, not the harness's
    assert time.monotonic() - started < 5
    assert all(not Path(f"/proc/{pid}").exists() for pid in kids)
    log = b"".join(p.read_bytes() for p in fleet.logdir.glob("up-*.log"))
    assert re.search(rb"killed [a-z, ]*worker before it finished", log), log
    assert b"goes back to its queue" in log
    # And the invocation it had taken runs again on the next worker, to completion
    assert fleet.redis.xlen(done) == 0
    fleet.worker(slots=1)
    fleet.wait_for(lambda: fleet.redis.xlen(done) == 1, timeout=40, what="the redelivered run")
