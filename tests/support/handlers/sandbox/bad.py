"""Misbehaving handlers, one per way a function can fail or attack its sandbox."""

import ctypes
import errno
import os
import signal
import subprocess
import sys
import time

MB = 1024 * 1024


def _inner(event):
    raise ValueError(f"bad value {event.get('value')!r}")


def raises(event, context):
    return _inner(event)


def unserialisable(event, context):
    return {"a set": {1, 2}}


def huge_result(event, context):
    return "x" * (event.get("mb", 7) * MB)


def exits(event, context):
    sys.stdout.write("about to exit\n")
    sys.stdout.flush()
    os._exit(event.get("code", 3))


def sys_exit(event, context):
    sys.exit(4)


def kills_itself(event, context):
    os.kill(os.getpid(), signal.SIGKILL)


def segfault(event, context):
    ctypes.string_at(0)


def busy(event, context):
    while True:
        pass


def sleeps(event, context):
    time.sleep(600)


def blocked_in_c(event, context):
    # Blocked in a read(2) nobody will ever satisfy, with every catchable signal ignored.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    r, _w = os.pipe()
    os.read(r, 1)


def ignores_sigterm(event, context):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(0.01)


def _double_fork_escapee():
    """Fork twice with setsid between, so the survivor is orphaned in a session of its own."""
    r, w = os.pipe()
    first = os.fork()
    if first == 0:
        os.setsid()
        second = os.fork()
        if second == 0:
            os.close(r)
            os.write(w, str(os.getpid()).encode())
            os.close(w)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            while True:
                time.sleep(1)
        os._exit(0)
    os.close(w)
    os.waitpid(first, 0)
    pid = int(os.read(r, 32))
    os.close(r)
    return pid


def escapes(event, context):
    """Leave a setsid'd double-forked grandchild and a detached subprocess behind."""
    grandchild = _double_fork_escapee()
    detached = subprocess.Popen(["sleep", "600"], start_new_session=True).pid
    print(f"ESCAPEES {grandchild} {detached}", flush=True)
    if event.get("hang"):
        time.sleep(600)
    return [grandchild, detached]


def forks_until_refused(event, context):
    count = 0
    try:
        while True:
            pid = os.fork()
            if pid == 0:
                time.sleep(600)
                os._exit(0)
            count += 1
    except OSError as exc:
        return {"forked": count, "errno": errno.errorcode.get(exc.errno, exc.errno)}


def fork_bomb(event, context):
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.001)


def allocates(event, context):
    block = bytearray(event["mb"] * MB)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block) // MB


def floods(event, context):
    chunk = "y" * 65535 + "\n"
    for _ in range(event["mb"] * 16):
        sys.stdout.write(chunk)
    return "flooded"


def opens_files(event, context):
    held = []
    try:
        while True:
            held.append(open(os.devnull))
    except OSError as exc:
        return {"opened": len(held), "errno": errno.errorcode.get(exc.errno, exc.errno)}
    finally:
        for f in held:
            f.close()


def writes_big_file(event, context):
    path = os.path.join(os.environ["TMPDIR"], "big")
    written = 0
    try:
        with open(path, "wb") as f:
            while written < event["mb"] * MB:
                f.write(b"z" * MB)
                written += MB
                f.flush()
    except OSError as exc:
        return {"written_mb": written // MB, "errno": errno.errorcode.get(exc.errno, exc.errno)}
    return {"written_mb": written // MB, "errno": None}
