"""The privileges deploy/README.md states, measured: a worker under a container's capabilities."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


# -- the privileges deploy/README.md states, measured -----------------------------------------

DOCKER_DEFAULT_CAPS = (
    "cap_chown,cap_dac_override,cap_fsetid,cap_fowner,cap_mknod,cap_net_raw,cap_setgid,"
    "cap_setuid,cap_setfcap,cap_setpcap,cap_net_bind_service,cap_sys_chroot,cap_kill,"
    "cap_audit_write"
)
K8S_WORKER_CAPS = "cap_chown,cap_dac_override,cap_fowner,cap_kill,cap_setgid,cap_setuid"

HANDLER = """\
import os, subprocess

def handler(event, context):
    child = subprocess.Popen(["sleep", "120"], start_new_session=True)
    return {"uid": os.getuid(), "orphan": child.pid}
"""

PROBE = """\
import json, sys
sys.path.insert(0, sys.argv[2])
from sandbox import Isolation, Sandbox
sandbox = Sandbox(sys.argv[1], "app.handler", timeout_s=10,
                  isolation=Isolation(use_cgroups=False))
outcome = sandbox.invoke({})
sandbox.close()
print(json.dumps({"user": sandbox.enforcement.user, "kill": sandbox.enforcement.kill,
                  "ok": outcome.ok, "result": outcome.result}))
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _probe_with_caps(keep: str) -> dict[str, Any]:
    """Run a sandbox as root holding only `keep`, with no CAP_SYS_ADMIN and no writable cgroup,
    its interpreter in a directory every uid can traverse (as python:3.11-slim's /usr/local)."""
    import json

    every = subprocess.run(["capsh", "--print"], capture_output=True, text=True).stdout
    bounding = re.search(r"^Bounding set =(.*)$", every, re.M)
    assert bounding is not None
    drop = sorted(set(bounding.group(1).split(",")) - set(keep.split(",")))
    work = Path(tempfile.mkdtemp(prefix="warren-deploy-"))
    try:
        work.chmod(0o755)
        code = work / "code"
        code.mkdir(mode=0o755)
        (code / "app.py").write_text(HANDLER)
        (code / "app.py").chmod(0o644)
        (work / "probe.py").write_text(PROBE)
        python = work / "python"
        python.mkdir()
        # A private mount namespace shows this interpreter at a traversable path; sys.prefix
        # follows the executable, so the sandbox needs no mount namespace of its own.
        base = getattr(sys, "_base_executable", sys.executable)
        inner = shlex.join([str(python / os.path.relpath(base, sys.base_prefix)),
                            str(work / "probe.py"), str(code), str(ROOT)])
        script = (
            f"mount --bind {shlex.quote(sys.base_prefix)} {shlex.quote(str(python))} && "
            f"exec capsh --drop={','.join(drop)} -- -c {shlex.quote('exec ' + inner)}"
        )
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if _venv_paths():  # the base interpreter, given the venv's packages
            env["PYTHONPATH"] = os.pathsep.join(_venv_paths())
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            capture_output=True, text=True, timeout=90, env=env,
        )
        assert done.returncode == 0, done.stderr
        report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _venv_paths() -> list[str]:
    if sys.prefix == sys.base_prefix:
        return []
    return [p for p in sys.path if p.startswith(sys.prefix) and os.path.isdir(p)]


def _can_probe() -> str | None:
    from sandbox.mountview import blocked_dir

    if os.geteuid() != 0:
        return "needs root"
    if not (shutil.which("capsh") and shutil.which("unshare")):
        return "needs capsh and unshare"
    if os.stat(sys.base_prefix).st_mode & stat.S_IXOTH == 0:
        return "the interpreter directory itself is private"
    if any(blocked_dir(p) for p in _venv_paths()):
        return "the venv is in a directory other uids cannot traverse"
    return None


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(_can_probe() is not None, reason=str(_can_probe()))
@pytest.mark.parametrize("caps", [DOCKER_DEFAULT_CAPS, K8S_WORKER_CAPS], ids=["docker", "k8s"])
def test_default_container_capabilities_give_each_sandbox_its_own_uid(caps):
    report = _probe_with_caps(caps)
    assert report["ok"], report
    assert report["user"] == "own-uid" and "uid" in report["kill"], report
    assert report["result"]["uid"] >= 810000
    assert not _alive(report["result"]["orphan"]), "a setsid'd descendant outlived close()"


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(_can_probe() is not None, reason=str(_can_probe()))
def test_without_setuid_handlers_run_as_root_and_detached_children_survive():
    report = _probe_with_caps("cap_chown,cap_dac_override,cap_fowner,cap_kill")
    try:
        assert report["ok"], report
        assert report["user"] == "caller" and report["kill"] == "process-group", report
        assert report["result"]["uid"] == 0
        assert _alive(report["result"]["orphan"]), "expected to survive: documented degradation"
    finally:
        if report.get("result") and _alive(report["result"]["orphan"]):
            os.kill(report["result"]["orphan"], 9)
