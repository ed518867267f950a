"""The child side of a spawn: isolate this process, then hand over to the runtime.

Runs in the freshly forked (or freshly exec'd) child, as root when the caller is root: new
session, join the sandbox's cgroups, rlimits, fds 0-3 only, drop to the sandbox's uid, scrub the
environment, then serve. A spare does what does not depend on the function ahead of time (fds,
session, cgroup: a migration waits for an RCU grace period; private view; stdio) and the rest
once the caller sends it a spec over its control socket. Standard library only (see protocol.py).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import signal
import socket
import sys
import time
from typing import Any

from sandbox import protocol
from sandbox.runtime import Runtime, setup_stdio

CTRL_FD = 3
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_RLIMITS = {
    "nofile": resource.RLIMIT_NOFILE,
    "fsize": resource.RLIMIT_FSIZE,
    "core": resource.RLIMIT_CORE,
    "nproc": resource.RLIMIT_NPROC,
    "as": resource.RLIMIT_AS,
}
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_LIBC = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    _LIBC.prctl(option, value, 0, 0, 0)


def enter(
    spec: dict[str, Any], ctrl_fd: int, log_fd: int, parent_pid: int, tmp_fd: int = -1
) -> None:
    """Isolate the current process per `spec` and serve; never returns (the exec launcher's)."""
    try:
        _reset_signals()
        _arrange_fds(ctrl_fd, log_fd, tmp_fd)
        _detach(spec["cgroup_procs"])
        request_filter = setup_stdio()
    except BaseException:
        os._exit(71)
    sock = socket.socket(fileno=CTRL_FD)
    tmp = CTRL_FD + 1 if tmp_fd >= 0 else -1
    _serve(spec, sock, protocol.FrameReader(), request_filter, parent_pid, tmp)


def wait_as_spare(
    ctrl_fd: int,
    log_fd: int,
    cgroup_procs: list[str],
    parent_pid: int,
    walls: bool = False,
    shm_mb: int | None = None,
) -> None:
    """Become a spare: everything that does not depend on the function is done now, ahead of
    the hand-off (fds, session, cgroup, private view with /dev/shm at `shm_mb`, its group's
    memory, stdio); then wait on the control socket for the caller's spec frame (with the /tmp
    volume's fd) and serve. Never returns."""
    try:
        _reset_signals()
        # The template's other fds go at once: among them are other children's status pipes,
        # whose end of stream must not wait for a spare.
        _arrange_fds(ctrl_fd, log_fd)
        _detach(cgroup_procs)
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:
            os._exit(1)
        if walls:
            _private_view(shm_mb)
        request_filter = setup_stdio()
        sock = socket.socket(fileno=CTRL_FD)
        _prefault(Runtime(sock, "", None, "", request_filter=request_filter))
        reader = protocol.FrameReader()
        frame, tmp_fd = _await_spec(sock, reader)
        spec = json.loads(protocol.unpack_spec(frame))
    except BaseException:
        os._exit(71)
    _serve(spec, sock, reader, request_filter, parent_pid, tmp_fd)


_WAKE_SPIN_S = 0.005


def _await_spec(sock: socket.socket, reader: protocol.FrameReader) -> tuple[bytes, int]:
    """The spec frame and the fd that came with it (-1 if none); exits if the caller closes.

    A wake frame, sent when a cold start begins, says the spec comes within a fraction of a
    millisecond: the spare then polls without blocking for a few ms, so that the spec finds it
    running instead of waking an idle CPU (0.25-0.7 ms measured here, a VM)."""
    space = socket.CMSG_SPACE(4)
    deadline, flags, tmp_fd = 0.0, 0, -1
    while True:
        try:
            msg, ancdata, _, _ = sock.recvmsg(protocol.READ_SIZE, space, flags)
        except BlockingIOError:
            if time.monotonic() > deadline:
                flags = 0  # no spec after all: block again
            continue
        if not msg:
            os._exit(0)  # the caller gave this spare up
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                tmp_fd = int.from_bytes(data[:4], sys.byteorder, signed=True)
        reader.feed(msg)
        while (frame := reader.frame()) is not None:
            if frame != b"W":
                return frame, tmp_fd
            deadline, flags = time.monotonic() + _WAKE_SPIN_S, socket.MSG_DONTWAIT


def _serve(
    spec: dict[str, Any],
    sock: socket.socket,
    reader: protocol.FrameReader,
    request_filter: Any,
    parent_pid: int,
    tmp_fd: int = -1,
) -> None:
    code = 0
    try:
        _walls(spec, tmp_fd, CTRL_FD)
        _isolate(spec, parent_pid)
        if (spec.get("walls") or {}).get("view"):
            sys.dont_write_bytecode = True  # a read-only tree: no __pycache__ to write, no try
        from sandbox.bootstrap import exec_bootstrap

        init_error = _enter_code_dir(spec)
        if spec.get("exec") and init_error is None:  # an external runtime: its bootstrap serves
            exec_bootstrap(spec, CTRL_FD)
        Runtime(sock, spec["handler"], init_error, spec["arn"], reader, request_filter).serve()
    except SystemExit as exc:  # sys.exit() in a handler ends the runtime, as it does on Lambda
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:
        code = 70
    os._exit(code)


def _prefault(runtime: Runtime) -> None:
    """Walk a cold start's hot paths while waiting, so their copy-on-write faults are done.

    After the fork every page the child writes (reference counts included) is copied on first
    touch; a spare pays that here, off the cold start's critical path. Each step mirrors one the
    handed-over child takes. A hand-off that arrives meanwhile stops the walk: on a busy machine
    a spare still walking would otherwise delay the very cold start it is there to speed up.
    """
    waiting = select.poll()
    waiting.register(CTRL_FD, select.POLLIN)
    for step in (_walk_frames, _walk_environment, _walk_stdio, runtime.rehearse):
        if waiting.poll(0):
            return
        step()


def _walk_frames() -> None:
    from sandbox import protocol
    from sandbox.runtime import LambdaContext

    body = json.dumps({"a": [1, 2.5, "x", None]}).encode()
    json.loads(body)
    like_a_spec = {"env": {f"AWS_VARIABLE_{n}": "/x/y" * 10 for n in range(24)},
                   "rlimits": {"nofile": 1, "fsize": 2}, "walls": {"view": True}, "uid": 1}
    json.loads(json.dumps(like_a_spec))
    LambdaContext("r", 0.0, {}).get_remaining_time_in_millis()
    protocol.unpack_response(protocol.pack_response(True, 0.0, 0, "", body)[4:])
    protocol.unpack_request(protocol.pack_request("r", 0.0, body)[4:])
    resource.getrusage(resource.RUSAGE_SELF)


def _walk_environment() -> None:
    _swap_environment({f"WARREN_PREFAULT_{n}": "x" * 48 for n in range(32)})
    [m for m in sys.modules if m.startswith("sandbox.")]  # noqa: B018  (as _enter_code_dir)


def _walk_stdio() -> None:
    from sandbox.runtime import Runtime

    Runtime.prefault_stdio()


def _reset_signals() -> None:
    # First: the template's wake-up fd is about to be closed, and its number reused.
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # Python's default: EFBIG, not a dead process


def _arrange_fds(ctrl_fd: int, log_fd: int, keep: int = -1) -> None:
    """stdin /dev/null, stdout and stderr the log pipe, fd 3 the control socket; and `keep`
    (the /tmp volume, which the exec launcher passes) moved to fd 4; nothing else."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    if keep >= 0:
        keep = os.dup(keep)  # above all of these, then down to 4 once they are in place
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.dup2(ctrl_fd, CTRL_FD)
    if keep >= 0:
        os.dup2(keep, CTRL_FD + 1)
    os.closerange(CTRL_FD + 1 + (keep >= 0), 1 << 16)


def _detach(cgroup_procs: list[str]) -> None:
    os.setsid()
    pid = str(os.getpid())
    for procs in cgroup_procs:
        with open(procs, "w") as f:
            f.write(pid)


def _isolate(spec: dict[str, Any], parent_pid: int) -> None:
    os.closerange(CTRL_FD + 1, 1 << 16)  # whatever the walls opened: fds 0-3 only
    for name, value in spec["rlimits"].items():
        if name == "as":
            value += _mapped_bytes()  # the limit is on top of what is already mapped
        resource.setrlimit(_RLIMITS[name], (value, value))
    uid = spec.get("uid")
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    # Set after the uid change, which clears it; then make sure the parent was not already gone.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)
    os.umask(0o077)
    _swap_environment(spec["env"])


_environ_kept: list[Any] = []  # what the C `environ` points at: it must live as long as we do
_ENVIRON_SLOTS = 256
_Environ = ctypes.c_char_p * (_ENVIRON_SLOTS + 1)  # made once: a ctypes array type is costly


def _swap_environment(env: dict[str, str]) -> None:
    """The environment replaced at once, for exec'd programs (C `environ`) and `os.environ`.

    clearenv() and `environ` pointed at an array of our own (POSIX allows it; glibc copies it
    on the next setenv), instead of one setenv per variable: each a malloc, and in a forked
    child page faults (0.35 ms against 0.15 ms for ~25 variables, measured).
    """
    if any("\0" in k + v or "=" in k or not k for k, v in env.items()):
        os.environ.clear()
        os.environ.update(env)  # refuses them as it always did
        return
    items = [f"{k}={v}".encode() for k, v in env.items()]
    kind = _Environ if len(items) <= _ENVIRON_SLOTS else ctypes.c_char_p * (len(items) + 1)
    array = kind(*items)  # NULL after the last
    _LIBC.clearenv()
    ctypes.c_void_p.in_dll(_LIBC, "environ").value = ctypes.addressof(array)
    _environ_kept[:] = [array, items]
    data = os.environ._data  # type: ignore[attr-defined]  # the mapping os.environ wraps
    data.clear()
    encode_key, encode_value = os.environ.encodekey, os.environ.encodevalue  # type: ignore[attr-defined]
    for key, value in env.items():
        data[encode_key(key)] = encode_value(value)


_view_ready = False
_shm_mb: int | None = None  # the size of the /dev/shm a spare mounted ahead


def _walls(spec: dict[str, Any], tmp_fd: int, ctrl_fd: int) -> None:
    """As root, before the fds are shuffled and the uid dropped (mounts need CAP_SYS_ADMIN)."""
    walls = spec.get("walls") or {}
    if walls.get("view"):
        from sandbox.mountwalls import sandbox_mounts

        _private_view()
        sandbox_mounts(spec["tmp_dir"], walls["shm_mb"], spec["code_dir"], tmp_fd,
                       walls.get("opt_dir"), _shm_mb)
    elif _view_ready:  # a spare built a view this spec does not want: its tmp dir stays writable
        from sandbox.mountwalls import writable

        writable(spec.get("tmp_dir") or spec["env"]["TMPDIR"])
    if tmp_fd >= 0:
        os.close(tmp_fd)
    if walls.get("network") == "none":
        from sandbox.mountwalls import no_network

        no_network()
        if spec.get("exec"):  # an external runtime: its Runtime API must be made in here
            from sandbox.netns import send_listener

            send_listener(ctrl_fd)


def _private_view(shm_mb: int | None = None) -> None:
    """Once per child: a spare has usually built it already, ahead of the hand-off."""
    global _view_ready, _shm_mb
    if not _view_ready:
        from sandbox.mountwalls import private_view, shm

        private_view()
        _view_ready = True
        if shm_mb is not None:
            shm(shm_mb)
            _shm_mb = shm_mb


def _mapped_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _enter_code_dir(spec: dict[str, Any]) -> str | None:
    code_dir = spec["code_dir"]
    # PYTHONPATH (the code, then its layers' paths, or the function's own) as `python` reads it.
    extra = [p for p in spec["env"].get("PYTHONPATH", "").split(":") if p and p != code_dir]
    sys.path[:] = [code_dir, *extra] + [p for p in sys.path if p and p != _OWN_DIR]
    for name in [m for m in sys.modules if m == "sandbox" or m.startswith("sandbox.")]:
        del sys.modules[name]  # a handler may ship its own module named `sandbox`
    try:
        os.chdir(code_dir)
        os.listdir(code_dir)
    except OSError as exc:
        who = f"uid {os.getuid()}"
        return f"code directory {code_dir} is not readable by the sandbox user ({who}): {exc}"
    return None


def kill_uid(uid: int, timeout_s: float = 10.0) -> None:
    """Become `uid` and SIGKILL every process it owns until none is left; never returns.

    kill(-1) reaches every process the caller may signal, including ones that called setsid or
    double-forked; with a uid of its own per sandbox that is exactly the sandbox's processes.
    kill(-1) cannot say when none is left, but fork can: under RLIMIT_NPROC 2 a fork succeeds
    only while this helper is the uid's one process (zombies count until they are reaped).
    """
    try:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (2, 2))
        os.setresuid(uid, uid, uid)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                probe = os.fork()
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os._exit(2)
                time.sleep(0.0002)
                continue
            if probe == 0:
                os._exit(0)
            os.waitpid(probe, 0)
            os._exit(0)
    except BaseException:
        os._exit(1)


def exec_main() -> None:
    """Entry point of a freshly exec'd child (the no-fork-server launcher)."""
    from sandbox.mountview import expose_interpreter

    expose_interpreter()
    spec = json.loads(sys.argv[1])
    enter(spec, int(sys.argv[2]), int(sys.argv[3]), os.getppid(), int(sys.argv[4]))
