"""A root worker missing some capabilities degrades, says once what is off, and never crashes.

Each test runs a real caller as root with capabilities dropped from its bounding set by
`capsh`, so the caller and its template process hold exactly what a container would give them.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.sandbox import HANDLERS, IS_ROOT, cgroup_available, wait_gone

from sandbox import Isolation, Sandbox, workspace
from sandbox.capabilities import CAP_CHOWN, CAP_KILL, CAP_SETUID, effective, missing
from sandbox.uidpool import UidPool
from warren.cli import cli
from warren.errors import ConfigError, SandboxError

REPO = str(Path(__file__).resolve().parents[2])

pytestmark = pytest.mark.skipif(
    not (IS_ROOT and shutil.which("capsh")), reason="needs root and capsh to drop capabilities"
)

_PRELUDE = f"""
import json, logging, sys
logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
sys.path.insert(0, {REPO!r})
from sandbox import Isolation, Sandbox, workspace
HANDLERS = {HANDLERS!r}
"""


def run_without(caps: str, body: str) -> tuple[object, list[str]]:
    """Run `body` in a root Python lacking `caps`; (what it printed as JSON, sandbox warnings)."""
    script = _PRELUDE + body
    shell = 'exec "$0" -c "$1"'
    argv = [str(shutil.which("capsh")), f"--drop={caps}", "--", "-c", shell, sys.executable, script]
    env = {"PATH": os.defpath, "HOME": "/tmp"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd="/tmp", timeout=90)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "sandbox limits" in line]
    return json.loads(done.stdout.strip().splitlines()[-1]), warnings


# -- capability reading ---------------------------------------------------------------------------


def test_capabilities_are_read_from_the_effective_set():
    status = "Name:\tx\nCapEff:\t00000000000000c1\n"  # CHOWN, SETGID, SETUID
    mask = effective(status)
    assert missing((CAP_CHOWN, CAP_SETUID, CAP_KILL), mask) == ["CAP_KILL"]
    assert missing((CAP_CHOWN,)) == []  # this test process is root with everything


# -- CAP_CHOWN ------------------------------------------------------------------------------------

_TWO_SANDBOXES = """
seen = []
for _ in range(2):
    with Sandbox(HANDLERS, handler="basic.write_tmp") as sb:
        out = sb.invoke({"name": "x.txt", "data": "y"})
        seen.append({"ok": out.ok, "error": out.error, "result": out.result, "uid": sb.uid,
                     "user": sb.enforcement.user, "text": sb.enforcement.describe()})
print(json.dumps(seen))
"""


def test_without_cap_chown_handlers_run_as_the_caller_with_a_private_tmp_dir_and_one_warning():
    seen, warnings = run_without("cap_chown", _TWO_SANDBOXES)
    assert isinstance(seen, list)
    for one in seen:
        assert one["ok"], one["error"]
        assert one["user"] == "caller" and one["uid"] is None
        assert one["result"]["owner"] == 0 and one["result"]["mode"] == "0o700"
        assert one["result"]["exists"]
        assert "CAP_CHOWN" in one["text"]
    assert len(warnings) == 1, warnings  # said once for both sandboxes
    assert "NOT enforced" in warnings[0] and "without CAP_CHOWN" in warnings[0]
    assert "handlers run as the caller's own user" in warnings[0]


def test_a_chown_refused_at_run_time_falls_back_to_the_caller_and_says_so(monkeypatch, caplog):
    # The capability check passed (this process holds CAP_CHOWN) but the kernel still refuses,
    # as a restrictive LSM would: the handler runs as the caller, with the warning.
    def refuse(*_args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    with Sandbox(HANDLERS, handler="basic.write_tmp") as sb:
        assert sb.enforcement.user == "own-uid"
        monkeypatch.setattr(os, "chown", refuse)
        # Made now, not taken from those made ahead (while chown still worked).
        monkeypatch.setattr(workspace.shared(), "take", lambda _kind: None)
        with caplog.at_level("WARNING", logger="sandbox"):
            out = sb.invoke({"name": "x.txt", "data": "y"})
        monkeypatch.undo()
        assert out.ok, out.error
        assert out.result["owner"] == os.getuid() and sb.uid is None
        assert sb.enforcement.user == "caller"
        assert "cannot hand the tmp dir to the sandbox uid" in sb.enforcement.describe()
    assert [r for r in caplog.records if "cannot hand the tmp dir" in r.getMessage()]


_NESTED_TMP = """
import os
with Sandbox(HANDLERS, handler="basic.write_tmp") as sb:
    out = sb.invoke({"name": "x.txt", "data": "y", "subdir": "deep/er"})
    tmp = sb.tmp_dir
print(json.dumps({"ok": out.ok, "error": out.error, "user": sb.enforcement.user,
                  "owner": out.result and out.result["owner"], "tmp": tmp,
                  "left": os.path.lexists(tmp)}))
"""


def test_without_cap_dac_override_close_still_removes_what_the_handler_left_in_tmp():
    seen, _ = run_without("cap_dac_override", _NESTED_TMP)
    assert isinstance(seen, dict)
    assert seen["ok"], seen["error"]
    assert seen["user"] == "own-uid" and seen["owner"] != 0
    assert not seen["left"], f"{seen['tmp']} was left behind"


def test_an_unusable_uid_lease_directory_falls_back_to_the_caller_and_says_so(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    pool = UidPool(base=_free_base(), size=4, lock_dir=str(blocker / "leases"))
    with caplog.at_level("WARNING", logger="sandbox"):
        with Sandbox(HANDLERS, "basic.describe", isolation=Isolation(uid_pool=pool)) as sb:
            out = sb.invoke({})
    assert out.ok and out.result["uid"] == os.getuid() and sb.uid is None
    assert "cannot lease a sandbox uid" in sb.enforcement.describe()
    assert [r for r in caplog.records if "cannot lease a sandbox uid" in r.getMessage()]


def test_all_uids_leased_is_an_infrastructure_fault_not_a_fallback(tmp_path):
    pool = UidPool(base=_free_base(), size=1, lock_dir=str(tmp_path))
    held = pool.acquire()
    try:
        with Sandbox(HANDLERS, "basic.describe", isolation=Isolation(uid_pool=pool)) as sb:
            with pytest.raises(SandboxError, match="in use"):
                sb.invoke({})
    finally:
        held.release()


# -- CAP_SETUID / CAP_SETGID ----------------------------------------------------------------------

_SETUID_PROBE = """
from sandbox.forkserver import ForkServer
server = ForkServer()
problem = server.unprivileged_problem()
server.close()
with Sandbox(HANDLERS, handler="basic.describe") as sb:
    out = sb.invoke({})
print(json.dumps({"problem": problem, "uid": out.result["uid"], "text": sb.enforcement.describe()}))
"""


@pytest.mark.parametrize("dropped", ["cap_setuid", "cap_setgid", "cap_setuid,cap_setgid"])
def test_without_setuid_or_setgid_the_warning_names_the_missing_capability(dropped):
    seen, warnings = run_without(dropped, _SETUID_PROBE)
    assert isinstance(seen, dict)
    assert seen["uid"] == 0
    wanted = sorted(c.upper() for c in dropped.split(","))
    for cap in wanted:
        assert cap in seen["text"]
    # The template's own probe names the call that failed and the capability it needs.
    assert "cannot read the interpreter" not in seen["problem"]
    assert re.search(r"(setgroups|setresgid|setresuid) failed", seen["problem"]), seen["problem"]
    assert wanted[0] in seen["problem"]  # setgroups/setresgid come first: CAP_SETGID if gone
    assert len(warnings) == 1 and "cannot read the interpreter" not in warnings[0]


# -- CAP_KILL -------------------------------------------------------------------------------------

_ESCAPE_AND_TIME_OUT = """
with Sandbox(HANDLERS, handler="bad.escapes", timeout_s=2, isolation=Isolation(**{knobs})) as sb:
    sb.start()
    pid = sb.pid
    out = sb.invoke({{"hang": True}})
    print(json.dumps({{"status": out.status, "logs": out.logs, "pid": pid, "uid": sb.uid,
                      "kill": sb.enforcement.kill, "alive": sb.alive}}))
"""


@pytest.mark.parametrize(
    "knobs",
    [
        pytest.param(
            {}, id="cgroup", marks=pytest.mark.skipif(not cgroup_available(), reason="no cgroup")
        ),
        pytest.param({"use_cgroups": False}, id="no-cgroup"),
    ],
)
def test_without_cap_kill_a_timeout_still_kills_everything_through_the_uid(knobs):
    seen, _ = run_without("cap_kill", _ESCAPE_AND_TIME_OUT.format(knobs=repr(knobs)))
    assert isinstance(seen, dict)
    assert seen["uid"] is not None and "uid" in seen["kill"]
    assert seen["status"] == "timeout" and not seen["alive"]
    match = re.search(r"ESCAPEES (\d+) (\d+)", seen["logs"])
    assert match, seen["logs"]
    assert wait_gone([seen["pid"], int(match.group(1)), int(match.group(2))]) == []


# -- the uid range --------------------------------------------------------------------------------


def _free_base() -> int:
    return 700_000 + random.randrange(0, 90_000, 8)


def test_the_uid_range_comes_from_the_environment_and_bad_values_are_refused():
    iso = Isolation.from_environ({"WARREN_SANDBOX_UID_BASE": "1200000"})
    assert (iso.uid_base, iso.uid_count) == (1_200_000, 60_000)
    iso = Isolation.from_environ(
        {"WARREN_SANDBOX_UID_BASE": "5000", "WARREN_SANDBOX_UID_COUNT": "9"}
    )
    assert (iso.uid_base, iso.uid_count) == (5000, 9)
    assert Isolation.from_environ({}).uid_base == 810_000
    with pytest.raises(ConfigError, match="WARREN_SANDBOX_UID_BASE must be a whole number"):
        Isolation.from_environ({"WARREN_SANDBOX_UID_BASE": "lots"})
    with pytest.raises(ConfigError, match="positive"):
        Isolation.from_environ({"WARREN_SANDBOX_UID_BASE": "0"})
    with pytest.raises(ConfigError, match="ends past uid"):
        Isolation.from_environ({"WARREN_SANDBOX_UID_BASE": str(2**32 - 10)})


def test_sandboxes_take_their_uids_from_the_configured_range():
    base = _free_base()
    iso = Isolation(uid_base=base, uid_count=4)
    with Sandbox(HANDLERS, "basic.describe", isolation=iso) as one, Sandbox(
        HANDLERS, "basic.describe", isolation=iso
    ) as two:
        uids = {one.invoke({}).result["uid"], two.invoke({}).result["uid"]}
    assert len(uids) == 2 and uids <= set(range(base, base + 4))


def test_local_invoke_reads_the_uid_base_from_the_environment():
    base = _free_base()
    env = {"WARREN_SANDBOX_UID_BASE": str(base), "WARREN_SANDBOX_UID_COUNT": "8"}
    args = ["local", "invoke", HANDLERS, "--handler", "basic.describe"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert base <= json.loads(result.stdout)["uid"] < base + 8
    bad = CliRunner().invoke(cli, args, env={"WARREN_SANDBOX_UID_BASE": "x"})
    assert bad.exit_code == 2 and "WARREN_SANDBOX_UID_BASE must be a whole number" in bad.stderr


def test_the_worker_refuses_a_bad_uid_range_at_start():
    env = {**os.environ, "WARREN_SANDBOX_UID_BASE": "-5"}
    done = subprocess.run(
        [sys.executable, "-m", "warren", "worker"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2  # a usage error: a bad setting
    assert "sandbox uid range must be positive" in done.stderr


# -- CAP_SYS_ADMIN / CAP_NET_ADMIN: the walls -----------------------------------------------------

_WALLS = """
iso = Isolation.from_environ({"WARREN_SANDBOX_UID_BASE": "700000"})
with Sandbox(HANDLERS, handler="basic.write_tmp", isolation=iso) as sb:
    out = sb.invoke({"name": "x.txt", "data": "y"})
    print(json.dumps({"ok": out.ok, "result": out.result, "view": sb.enforcement.view,
                      "network": sb.enforcement.network, "text": sb.enforcement.describe(),
                      "tmp_dir": sb.tmp_dir}))
"""


def test_without_cap_sys_admin_the_file_and_process_walls_are_down_said_once_and_handlers_run():
    seen, warnings = run_without("cap_sys_admin", _WALLS)
    assert isinstance(seen, dict)
    assert seen["ok"] and seen["view"] == "shared"
    assert seen["result"]["tmpdir"] == seen["tmp_dir"]  # the host tmp dir, not a private /tmp
    assert len(warnings) == 1 and "private /tmp, /dev/shm" in warnings[0]


def test_without_cap_net_admin_the_network_wall_is_down_and_said_so():
    seen, warnings = run_without("cap_net_admin", _WALLS)
    assert isinstance(seen, dict)
    assert seen["ok"] and seen["network"] == "open" and seen["view"] == "private"
    assert len(warnings) == 1 and "can reach the fleet's Redis/RabbitMQ" in warnings[0]
