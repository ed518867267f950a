"""A handler that checks each wall between tenants and the fleet and returns a verdict per wall.

The event names what to try: `deny` ([host, port] pairs that must refuse), `allow` (pairs that
must answer), `outsider_pid` (a process outside the sandbox: signal and ptrace must fail),
`peek_files` / `peek_pids` (another tenant's files and processes, which must not be found),
`leave` (a file name to leave in /tmp and /dev/shm for a second tenant to look for).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket

_HOST_DIRS = ("/var/tmp", "/run", "/dev", "/etc", "/", "/root", "/home", "/opt")


def _connect(host, port, timeout=2.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return "connected"
    except OSError as exc:
        return f"refused: {exc.strerror or exc}"


def _writable_host_dirs(code_dir):
    found = []
    for d in (*_HOST_DIRS, code_dir):
        path = os.path.join(d, f".warren-wall-probe-{os.getpid()}")
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except OSError:
            continue
        os.close(fd)
        os.unlink(path)
        found.append(d)
    return found


def _others_processes():
    me = os.getuid()
    others = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid != me:
                    others.append(int(name))
            except OSError:
                pass
    return others


def _reach(pid):
    """What signalling and ptrace-attaching `pid` does: both must fail."""
    results = {}
    try:
        os.kill(pid, 0)
        results["signal"] = "delivered"
    except OSError as exc:
        results["signal"] = errno.errorcode.get(exc.errno, str(exc.errno))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(16, pid, None, None) == 0:  # PTRACE_ATTACH
        libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
        results["ptrace"] = "attached"
    else:
        results["ptrace"] = errno.errorcode.get(ctypes.get_errno(), "?")
    return results


def handler(event, context):
    walls = {}
    tmp_before = sorted(os.listdir("/tmp"))
    shm_before = sorted(os.listdir("/dev/shm"))
    tmp_ok = os.environ.get("TMPDIR") == "/tmp"
    try:
        with open("/tmp/probe-write", "w") as f:
            f.write("x")
        os.unlink("/tmp/probe-write")
    except OSError as exc:
        tmp_ok = False
        tmp_before.append(f"write failed: {exc}")
    expected = set(event.get("tmp_expected", []))
    walls["tmp"] = {"ok": tmp_ok and set(tmp_before) <= expected, "seen": tmp_before,
                    "TMPDIR": os.environ.get("TMPDIR")}
    try:
        with open("/dev/shm/probe-write", "w") as f:
            f.write("x")
        os.unlink("/dev/shm/probe-write")
        shm_ok = set(shm_before) <= expected
    except OSError as exc:
        shm_ok, shm_before = False, [*shm_before, f"write failed: {exc}"]
    walls["shm"] = {"ok": shm_ok, "seen": shm_before}
    writable = _writable_host_dirs(os.environ.get("LAMBDA_TASK_ROOT", "/"))
    walls["host_dirs"] = {"ok": not writable, "writable": writable}
    others = _others_processes()
    walls["processes"] = {"ok": not others, "visible_other_pids": others[:20]}
    if event.get("outsider_pid"):
        reach = _reach(int(event["outsider_pid"]))
        walls["signals"] = {"ok": "delivered" not in reach.values()
                            and "attached" not in reach.values(), **reach}
    if event.get("deny"):
        seen = {f"{h}:{p}": _connect(h, p) for h, p in event["deny"]}
        walls["control_plane"] = {"ok": all(v != "connected" for v in seen.values()), **seen}
    if event.get("allow"):
        seen = {f"{h}:{p}": _connect(h, p) for h, p in event["allow"]}
        walls["outbound"] = {"ok": all(v == "connected" for v in seen.values()), **seen}
    leaked = [k for k, v in os.environ.items()
              if k.startswith("WARREN_") or "amqp://" in v or "redis://" in v or "rediss://" in v]
    walls["credentials"] = {"ok": not leaked, "leaked": leaked}
    if "peek_files" in event or "peek_pids" in event:
        found = [p for p in event.get("peek_files", []) if os.path.exists(p)]
        found += [f"pid {p}" for p in event.get("peek_pids", []) if os.path.exists(f"/proc/{p}")]
        walls["other_tenant"] = {"ok": not found, "found": found}
    if event.get("leave"):
        for d in ("/tmp", "/dev/shm"):
            with open(os.path.join(d, event["leave"]), "w") as f:
                f.write("secret")
    return {"walls": walls, "pid": os.getpid(), "uid": os.getuid()}
