"""The fork server is shared, thread-safe, restarts when it dies, and nothing leaks or survives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.sandbox import HANDLERS, wait_gone

from sandbox import Isolation, Sandbox
from sandbox.cgroup import CgroupParent
from sandbox.execlauncher import ExecLauncher
from sandbox.forkserver import ForkServer

REPO = str(Path(__file__).resolve().parents[3])


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _our_cgroups() -> list[str]:
    parent = CgroupParent.detect()
    if parent is None:
        return []
    prefix = f"warren-sbx-{os.getpid()}-"
    dirs = {parent.memory_dir, parent.pids_dir}
    return [name for d in dirs for name in os.listdir(d) if name.startswith(prefix)]


def test_sandboxes_share_one_fork_server_per_process():
    one, two = Sandbox(HANDLERS, handler="basic.noop"), Sandbox(HANDLERS, handler="basic.noop")
    with one, two:
        one.invoke({})
        two.invoke({})
        assert ForkServer.shared() is ForkServer.shared()
        assert ForkServer.shared().pid is not None


def test_many_threads_start_and_invoke_their_own_sandboxes_at_once():
    errors: list[str] = []
    start = threading.Barrier(8)

    def slot(n: int) -> None:
        start.wait()
        with Sandbox(HANDLERS, handler="basic.echo") as sb:
            for i in range(50):
                out = sb.invoke({"slot": n, "i": i})
                if out.result != {"slot": n, "i": i}:
                    errors.append(f"slot {n} call {i}: {out.result!r} {out.error!r}")

    threads = [threading.Thread(target=slot, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=100)
    assert errors == []


def test_a_dead_fork_server_is_restarted_and_its_orphans_do_not_survive_it():
    server = ForkServer()
    try:
        isolation = Isolation(launcher=server)
        with Sandbox(HANDLERS, handler="basic.describe", isolation=isolation) as sb:
            first = sb.invoke({}).result
            old_server = server.pid
            os.kill(old_server, signal.SIGKILL)
            assert wait_gone([first["pid"]]) == []  # the child dies with its template
            again = sb.invoke({})
            assert again.ok and again.init_ms is not None
            assert again.result["pid"] != first["pid"]
            assert server.pid != old_server
    finally:
        server.close()


@pytest.mark.parametrize("ending", ["killed", "exits-without-close"])
def test_a_caller_that_goes_leaves_no_process_cgroup_or_tmp_dir_behind(ending):
    script = f"""
import json, sys, time
sys.path.insert(0, {REPO!r})
from sandbox import Sandbox
from sandbox.forkserver import ForkServer
sb = Sandbox({HANDLERS!r}, handler="bad.escapes", timeout_s=10)
out = sb.invoke({{}})
print(json.dumps({{"escapees": out.result, "child": sb.pid, "server": ForkServer.shared().pid,
                  "tmp": sb.tmp_dir, "cgroup": sb.cgroup.memory_dir if sb.cgroup else None}}),
      flush=True)
if sys.argv[1] == "killed":
    time.sleep(600)
"""
    caller = subprocess.Popen(
        [sys.executable, "-c", script, ending],
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": os.defpath},
    )
    try:
        seen = json.loads(caller.stdout.readline())
    finally:
        caller.kill()
        caller.wait()
        caller.stdout.close()
    pids = [*seen["escapees"], seen["child"], seen["server"]]
    assert wait_gone(pids, within_s=10) == []
    assert not os.path.exists(seen["tmp"])
    if seen["cgroup"]:
        assert not os.path.exists(seen["cgroup"])


def test_a_caller_that_exits_without_closing_stops_its_fork_server_cleanly():
    # The shared fork server is stopped at exit, not found still running by a finaliser.
    script = f"""
import sys
sys.path.insert(0, {REPO!r})
from sandbox import Sandbox
sb = Sandbox({HANDLERS!r}, handler="basic.echo")
assert sb.invoke({{"a": 1}}).ok
sb.close()
"""
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script],
        capture_output=True, text=True, timeout=60, env={"PATH": os.defpath},
    )
    assert done.returncode == 0, done.stderr
    assert "ResourceWarning" not in done.stderr, done.stderr


def test_a_thousand_warm_invocations_leak_no_memory_or_descriptors():
    with Sandbox(HANDLERS, handler="basic.echo") as sb:
        for _ in range(200):
            sb.invoke({"warm": "up"})
        fds, rss = _fd_count(), _rss_kb()
        for i in range(1000):
            assert sb.invoke({"i": i}).ok
        assert _fd_count() == fds
        assert _rss_kb() - rss < 2048


def test_opening_and_closing_sandboxes_leaks_no_descriptor_cgroup_or_tmp_dir():
    Sandbox(HANDLERS, handler="basic.noop").close()  # the shared fork server is up before we count
    fds = _fd_count()
    tmp_dirs = []
    for _ in range(30):
        with Sandbox(HANDLERS, handler="basic.noop") as sb:
            assert sb.invoke({}).ok
            tmp_dirs.append(sb.tmp_dir)
    assert _fd_count() == fds
    assert _our_cgroups() == []
    assert not any(os.path.exists(d) for d in tmp_dirs)


@pytest.mark.parametrize("handler", ["basic.hello", "bad.sleeps"])
def test_the_exec_launcher_runs_the_same_contract_without_a_fork_server(handler):
    isolation = Isolation(launcher=ExecLauncher())
    with Sandbox(HANDLERS, handler=handler, timeout_s=2, isolation=isolation) as sb:
        out = sb.invoke({"name": "exec"})
        if handler == "basic.hello":
            assert out.ok and out.result == {"greeting": "hello exec"}
            assert out.init_ms is not None and "hello exec" in out.logs
        else:
            assert out.status == "timeout"
            assert not sb.alive


def test_a_caller_with_more_than_1024_open_descriptors_still_works():
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    server = ForkServer()  # its socket gets a number past 1024 too
    try:
        isolation = Isolation(launcher=server)
        with Sandbox(HANDLERS, handler="basic.echo", isolation=isolation, timeout_s=5) as sb:
            assert sb.invoke({"many": "fds"}).result == {"many": "fds"}
            big = "x" * (3 * 1024 * 1024)  # more than a socket buffer: the send waits on poll
            assert sb.invoke(big).result == big
    finally:
        server.close()
        for fd in held:
            os.close(fd)
