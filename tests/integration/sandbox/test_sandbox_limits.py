"""The sandbox holds handlers to their limits and leaves nothing behind, with real bad handlers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.sandbox import (
    HANDLERS,
    IS_ROOT,
    cgroup_available,
    code_dir,
    processes_of_uid,
    requires_cgroup,
    requires_root,
    wait_gone,
)

from sandbox import Isolation, Sandbox

REPO = str(Path(__file__).resolve().parents[3])

# The kill mechanisms, each tested alone where the machine allows it.
KILL_MODES = [
    pytest.param({}, id="default"),
    pytest.param(
        {"use_cgroups": False, "own_uid": True},
        id="uid-only",
        marks=pytest.mark.skipif(not IS_ROOT, reason="needs root: a uid of its own per sandbox"),
    ),
    pytest.param(
        {"use_cgroups": True, "own_uid": False},
        id="cgroup-only",
        marks=pytest.mark.skipif(not cgroup_available(), reason="needs a writable cgroup"),
    ),
]


@pytest.fixture
def sandbox_factory():
    opened: list[Sandbox] = []

    def make(handler: str, isolation: dict | None = None, **kwargs) -> Sandbox:
        sb = Sandbox(HANDLERS, handler=handler, isolation=Isolation(**(isolation or {})), **kwargs)
        opened.append(sb)
        return sb

    yield make
    for sb in opened:
        sb.close()


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _escapees(logs: str) -> list[int]:
    match = re.search(r"ESCAPEES (\d+) (\d+)", logs)
    assert match, logs
    return [int(match.group(1)), int(match.group(2))]


# -- timeout --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "handler", ["bad.busy", "bad.sleeps", "bad.blocked_in_c", "bad.ignores_sigterm"]
)
def test_a_handler_still_running_at_its_deadline_is_killed_and_reported(sandbox_factory, handler):
    sb = sandbox_factory(handler, timeout_s=1)
    sb.start()
    pid = sb.pid
    began = time.monotonic()
    out = sb.invoke({}, request_id="slow")
    waited = time.monotonic() - began
    assert out.status == "timeout" and not out.ok
    assert out.error_type == "Sandbox.Timedout"
    assert out.error == {
        "errorMessage": "RequestId: slow Error: Task timed out after 1.00 seconds",
        "errorType": "Sandbox.Timedout",
    }
    assert "slow Task timed out after 1.00 seconds" in out.logs
    assert out.logs.rstrip().endswith("Status: timeout")
    assert out.duration_ms >= 1000
    assert waited < 10  # it did not wait for the handler (600 s or forever)
    assert wait_gone([pid]) == []
    assert not sb.alive


def test_after_a_timeout_the_next_invocation_gets_a_fresh_sandbox(sandbox_factory):
    sb = sandbox_factory("basic.remaining", timeout_s=1)
    assert sb.invoke({"sleep": 5}).status == "timeout"
    again = sb.invoke({"sleep": 0})
    assert again.ok and again.init_ms is not None


@pytest.mark.parametrize("isolation", KILL_MODES)
def test_no_descendant_survives_a_timeout_not_even_setsid_double_forked_ones(
    sandbox_factory, isolation
):
    sb = sandbox_factory("bad.escapes", isolation=isolation, timeout_s=2)
    out = sb.invoke({"hang": True})
    assert out.status == "timeout"
    escapees = _escapees(out.logs)
    assert wait_gone(escapees) == []


@pytest.mark.parametrize("isolation", KILL_MODES)
def test_close_kills_descendants_left_by_a_successful_invocation(sandbox_factory, isolation):
    sb = sandbox_factory("bad.escapes", isolation=isolation, timeout_s=5)
    out = sb.invoke({})
    assert out.ok
    escapees = out.result
    assert all(os.path.exists(f"/proc/{pid}") for pid in escapees)
    sb.close()
    assert wait_gone(escapees) == []


# -- memory ---------------------------------------------------------------------------------------


@requires_cgroup
def test_allocating_past_the_memory_limit_is_out_of_memory_under_a_cgroup(sandbox_factory):
    sb = sandbox_factory("bad.allocates", memory_mb=128)
    assert sb.enforcement.memory.startswith("cgroup")
    before = _rss_kb()
    out = sb.invoke({"mb": 400}, request_id="oom")
    assert out.status == "error" and out.error_type == "Runtime.OutOfMemory"
    expected = "RequestId: oom Error: Runtime exited with error: signal: killed"
    assert out.error["errorMessage"] == expected
    assert "Status: error\tError Type: Runtime.OutOfMemory" in out.logs
    assert out.max_memory_mb >= 100
    assert _rss_kb() - before < 50 * 1024  # the caller did not grow
    assert not sb.alive
    assert sb.invoke({"mb": 10}).ok  # a fresh sandbox serves the next one


def test_allocating_past_the_memory_limit_is_out_of_memory_under_rlimits(sandbox_factory):
    sb = sandbox_factory("bad.allocates", isolation={"use_cgroups": False}, memory_mb=128)
    assert sb.enforcement.memory == "rlimit-as"
    assert sb.invoke({"mb": 100}).ok  # within the limit
    out = sb.invoke({"mb": 256})
    assert out.status == "error" and out.error_type == "Runtime.OutOfMemory"
    assert not sb.alive
    assert sb.invoke({"mb": 10}).ok


def test_an_init_that_never_finishes_is_timed_out():
    files = {"app.py": "import time\ntime.sleep(600)\n\ndef h(e, c):\n    return 1\n"}
    with code_dir(files) as path:
        iso = Isolation(init_timeout_s=1)
        with Sandbox(path, handler="app.h", isolation=iso) as sb:
            sb.start()
            pid = sb.pid
            out = sb.invoke({})
    assert out.status == "timeout" and out.error_type == "Sandbox.Timedout"
    assert "Init timed out after 1.00 seconds" in out.error["errorMessage"]
    assert wait_gone([pid]) == []


# -- processes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("isolation", KILL_MODES[:2])
def test_forking_is_refused_at_the_process_limit(sandbox_factory, isolation):
    sb = sandbox_factory(
        "bad.forks_until_refused", isolation=isolation, memory_mb=2048, timeout_s=60
    )
    if sb.enforcement.processes == "none":
        pytest.skip("no process limit can be enforced here: " + sb.enforcement.describe())
    out = sb.invoke({})
    assert out.ok, out.error
    assert out.result["errno"] == "EAGAIN"
    assert 900 <= out.result["forked"] < 1024  # Lambda's 1,024 processes and threads
    uid = sb.uid
    sb.close()
    if uid is not None:
        assert wait_gone(processes_of_uid(uid)) == []


@pytest.mark.slow
@pytest.mark.parametrize("isolation", KILL_MODES[:2])
def test_a_fork_bomb_is_contained_and_leaves_nothing_behind(sandbox_factory, isolation):
    sb = sandbox_factory("bad.fork_bomb", isolation=isolation, memory_mb=2048, timeout_s=2)
    if sb.enforcement.processes == "none":
        pytest.skip("no process limit can be enforced here: " + sb.enforcement.describe())
    sb.start()
    group = sb.cgroup
    out = sb.invoke({})
    assert out.status == "timeout"
    if sb.uid is not None:
        assert wait_gone(processes_of_uid(sb.uid)) == []
    if group is not None:  # emptied, then removed with the discarded child
        assert group.pids() == []
        assert not os.path.exists(group.pids_dir)


# -- files, fds, core dumps -----------------------------------------------------------------------


def test_open_files_are_capped(sandbox_factory):
    out = sandbox_factory("bad.opens_files").invoke({})
    assert out.result["errno"] == "EMFILE"
    assert 1000 <= out.result["opened"] < 1024


def test_file_size_is_capped(sandbox_factory):
    out = sandbox_factory("bad.writes_big_file", isolation={"max_file_mb": 5}).invoke({"mb": 20})
    assert out.result == {"written_mb": 5, "errno": "EFBIG"}


def test_limits_inside_the_sandbox(sandbox_factory):
    sb = sandbox_factory("basic.limits")
    seen = sb.invoke({}).result
    assert seen["RLIMIT_CORE"] == [0, 0]  # no core dumps
    assert seen["RLIMIT_NOFILE"] == [1024, 1024]
    assert seen["RLIMIT_FSIZE"] == [512 * 1024 * 1024] * 2
    if sb.uid is not None:
        assert seen["RLIMIT_NPROC"] == [1024, 1024]


def test_the_child_inherits_no_file_descriptor_of_the_caller(sandbox_factory, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("do not leak")
    fd = os.open(secret, os.O_RDONLY)
    os.set_inheritable(fd, True)
    try:
        fds = sandbox_factory("basic.open_fds").invoke({}).result
    finally:
        os.close(fd)
    assert set(fds) <= {"0", "1", "2", "3"}, fds
    assert fds["0"] == "/dev/null"
    assert fds["1"].startswith("pipe:") and fds["1"] == fds["2"]
    assert fds["3"].startswith("socket:")
    assert str(secret) not in fds.values()


# -- user and tmp dir -----------------------------------------------------------------------------


@requires_root
def test_a_root_caller_runs_each_sandbox_as_an_unprivileged_uid_of_its_own(sandbox_factory):
    one, two = sandbox_factory("basic.describe"), sandbox_factory("basic.describe")
    uid_one, uid_two = one.invoke({}).result["uid"], two.invoke({}).result["uid"]
    assert uid_one != 0 and uid_two != 0 and uid_one != uid_two
    assert (one.uid, two.uid) == (uid_one, uid_two)
    assert one.enforcement.user == "own-uid"


def test_tmp_dir_is_private_kept_while_warm_and_removed_on_close(sandbox_factory):
    sb = sandbox_factory("basic.write_tmp")
    wrote = sb.invoke({"name": "note.txt", "data": "kept"}).result
    seen_as = "/tmp" if sb.enforcement.view == "private" else sb.tmp_dir
    assert wrote["tmpdir"] == seen_as and wrote["mode"] == "0o700"
    if sb.uid is not None:
        assert wrote["owner"] == sb.uid
    assert sb.invoke({"name": "note.txt"}).result["exists"]
    tmp = sb.tmp_dir
    sb.close()
    assert not os.path.exists(tmp)


# -- logs -----------------------------------------------------------------------------------------


def test_a_flooding_handler_cannot_exhaust_the_callers_memory(sandbox_factory):
    sb = sandbox_factory("bad.floods", isolation={"log_cap_bytes": 64 * 1024}, timeout_s=60)
    before = _rss_kb()
    out = sb.invoke({"mb": 200})
    assert out.ok and out.result == "flooded"
    assert len(out.logs) < 80 * 1024
    assert "bytes of output dropped" in out.logs
    assert out.logs.splitlines()[-1].startswith("REPORT RequestId:")
    assert _rss_kb() - before < 30 * 1024


# -- without privileges ---------------------------------------------------------------------------


_UNPRIVILEGED_SCRIPT = """
import json, logging, sys
logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(message)s")
sys.path.insert(0, {repo!r})
from sandbox import Sandbox
with Sandbox({handlers!r}, handler="basic.describe") as sb:
    out = sb.invoke({{}})
    timed = Sandbox({handlers!r}, handler="bad.sleeps", timeout_s=1)
    slow = timed.invoke({{}})
    timed.close()
print(json.dumps({{"ok": out.ok, "uid": out.result["uid"], "enforcement": sb.enforcement.describe(),
                  "timeout": slow.error_type}}))
"""

_DROP_TO_NOBODY = """
import os, sys
sys.path.insert(0, {repo!r})
from sandbox.mountview import expose_interpreter
problem = expose_interpreter()
assert problem is None, problem
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
os.execv(sys.executable, [sys.executable, "-c", sys.argv[1]])
"""


def test_an_unprivileged_caller_still_runs_handlers_and_says_what_is_not_enforced():
    script = _UNPRIVILEGED_SCRIPT.format(repo=REPO, handlers=HANDLERS)
    if IS_ROOT:  # become nobody, in a mount namespace where nobody can still read Python
        argv = [sys.executable, "-c", _DROP_TO_NOBODY.format(repo=REPO), script]
    else:
        argv = [sys.executable, "-c", script]
    env = {"PATH": os.defpath, "HOME": "/tmp"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd="/tmp", timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"]
    assert report["timeout"] == "Sandbox.Timedout"
    assert "NOT enforced" in report["enforcement"]
    assert "handlers run as the caller's own user" in report["enforcement"]
    warnings = [line for line in done.stderr.splitlines() if "sandbox limits" in line]
    assert len(warnings) == 1 and "NOT enforced" in warnings[0]  # said once, clearly
