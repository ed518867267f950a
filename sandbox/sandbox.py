"""`Sandbox`: one function's warm child process, invoked over a socket under Lambda's limits.

The child is forked by the shared template process (forkserver.py), isolates itself (child.py)
and imports the handler once; each `invoke` then sends one request frame and waits (channel.py)
for the response, the child's output or its exit, until the deadline. A timeout, an
out-of-memory kill or a crash kills the child with every process it started and discards it; the
next `invoke` starts a fresh one.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any, cast

import orjson

from sandbox import childspec, netwall, protocol, runtimes, tmpvolume, workspace
from sandbox.apichannel import ApiChannel, Listener, listen, open_channel
from sandbox.cgroup import Cgroup
from sandbox.channel import EXITED, TIMEOUT, ChildChannel
from sandbox.forkserver import ChildProcess, ForkServer, Launcher, ready
from sandbox.isolation import Enforcement, Isolation
from sandbox.logbuffer import LogBuffer
from sandbox.outcome import Outcome, describe_status, make_outcome
from sandbox.procstatus import peak_rss_kb
from sandbox.tmpdir import make_tmp_dir, remove_tree
from sandbox.uidpool import UidLease, UidsExhausted
from warren import aws
from warren.errors import InvalidParameter, SandboxError

MB = 1024 * 1024


class Sandbox:
    """Runs `handler` ("module.function") from `code_dir` in an isolated, reusable child.

    Thread-safe across Sandbox objects; one Sandbox serves one invocation at a time.
    """

    def __init__(
        self,
        code_dir: str | os.PathLike[str],
        handler: str,
        memory_mb: int = 128,
        timeout_s: float = 3,
        env: Mapping[str, str] | None = None,
        *,
        function_name: str | None = None,
        function_version: str = "$LATEST",
        invoked_function_arn: str | None = None,
        region: str = "us-east-1",
        isolation: Isolation | None = None,
        runtime: str | None = None,
        opt_dir: str | None = None,
        network: str = "default",
        ephemeral_storage_mb: int = tmpvolume.DEFAULT_MB,
    ) -> None:
        self.code_dir = os.path.abspath(code_dir)
        if not os.path.isdir(self.code_dir):
            raise InvalidParameter(f"code directory {self.code_dir} does not exist")
        if not isinstance(memory_mb, int) or memory_mb < 32:
            raise InvalidParameter(f"memory must be a whole number of MB >= 32, not {memory_mb!r}")
        if not timeout_s > 0:
            raise InvalidParameter(f"timeout must be a positive number of seconds: {timeout_s!r}")
        self.opt_dir = opt_dir  # its layers merged (sandbox/layers.py); a bootstrap may be there
        self._plan = runtimes.plan(runtime, self.code_dir, memory_mb, opt_dir)  # or refused
        self.network = netwall.check_mode(network)
        self.ephemeral_storage_mb, self._volume = tmpvolume.check_size(ephemeral_storage_mb), -1
        self.runtime = self._plan.runtime
        self.handler = handler
        self.memory_mb = memory_mb
        self.timeout_s = float(timeout_s)
        self.function_name = function_name or os.path.basename(self.code_dir) or "function"
        self.function_version = function_version
        self.region = region
        self.invoked_function_arn = invoked_function_arn or (
            aws.function_arn(self.function_name, region=region)
        )
        self._env = dict(env or {})
        self._iso = isolation or Isolation()
        self._launcher: Launcher = self._iso.launcher or ForkServer.shared()
        enforcement, self._cg_parent, self._own_uid = self._iso.resolve(self._launcher)
        self.enforcement: Enforcement = enforcement
        self._lock, self._closed, self._tmp_dir = threading.Lock(), False, cast("str | None", None)
        self._uid: UidLease | None = None
        self._cgroup: Cgroup | None = None
        self._child: ChildProcess | None = None
        self._channel: ChildChannel | ApiChannel | None = None
        self._awaiting_ready = False
        self._wants_workspace = False

    # -- public surface -------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """False once the child died or was discarded; the next invoke starts a new one."""
        channel = self._channel
        return channel is not None and not channel.exited()

    @property
    def usable(self) -> bool:
        """Not closed and not discarded after a failure (no syscall: `alive` polls the child)."""
        return self._channel is not None and not self._closed

    pid = property(lambda self: self._child.pid if self._child is not None else None)

    uid = property(lambda self: self._uid.uid if self._uid is not None else None,
                   doc="The sandbox's own uid, when it runs as one.")

    cgroup = property(lambda self: self._cgroup)

    tmp_dir = property(lambda self: self._tmp_dir, doc="The tmp dir on the host (its /tmp).")

    def start(self, wait: bool = False) -> str | None:
        """Start the child before its first invoke; with `wait`, run init out (None, or why not)."""
        with self._lock:
            if not self.alive:
                self._spawn()
            logs = LogBuffer(self._iso.log_cap_bytes)
            early = self._await_ready("init", logs) if wait and self._awaiting_ready else None
            self._ahead()
            return early.failure() if isinstance(early, Outcome) else None

    def invoke(self, event: Any = None, *, payload: bytes | None = None,
               request_id: str | None = None, client_context: bytes | None = None) -> Outcome:
        """Run the handler once; `payload` is the event as JSON bytes, `client_context` JSON."""
        if payload is None:
            try:
                payload = orjson.dumps(event)
            except TypeError as exc:
                raise InvalidParameter(f"the event is not JSON-serialisable: {exc}") from None
        rid = request_id or aws.new_request_id()
        with self._lock:
            if self._closed:
                raise SandboxError("this sandbox is closed")
            if not self.alive:
                self._launcher.wake()  # the spare wakes while this thread prepares its spec
                self._discard()
                self._spawn()
            logs = LogBuffer(self._iso.log_cap_bytes)
            if not self._awaiting_ready:
                return self._invoke(rid, payload, logs, None, client_context or b"")
            # A cold start: the request goes along now (its timeout counted from when the child
            # reads it, after init), so the child answers it without waiting for another trip.
            sent = self._send_ahead(rid, payload, client_context or b"")
            try:
                early = self._await_ready(rid, logs)
                if isinstance(early, Outcome):
                    return early
                return self._invoke(rid, payload, logs, early, client_context or b"", sent)
            finally:
                self._ahead()

    def close(self) -> None:
        """Kill everything the sandbox started and remove its tmp dir; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._discard()
            if self._uid is not None:
                self._uid.release()
                self._uid = None
            self._volume = tmpvolume.release(self._volume)
            if self._tmp_dir is not None:
                remove_tree(self._tmp_dir)
                self._tmp_dir = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- lifecycle ---------------------------------------------------------------------------

    def _spawn(self) -> None:
        self._prepare()
        listener = listen(self.network) if self._plan.external else None  # its Runtime API endpoint
        try:
            self._child = self._launcher.spawn(self._spec(listener), self._volume)
        except BaseException:
            if listener is not None:
                listener.close()
            raise
        self._cgroup = self._child.cgroup
        owner = (self.invoked_function_arn, self.uid, self.memory_mb)
        self._channel = open_channel(self._child.ctrl, self._child.log_r, self._child, listener,
                                     owner)
        self._awaiting_ready = True

    def _workspace_kind(self) -> workspace.Kind:
        private = self.enforcement.view == "private"
        under_tmp = private and self.code_dir.startswith("/tmp/")
        return workspace.Kind(self._iso.pool() if self._own_uid else None,
                              self.ephemeral_storage_mb if private else None,
                              self.code_dir[len("/tmp/"):] if under_tmp else None)

    def _ahead(self) -> None:
        """Once a cold start is over: the next spare and workspace are made now, between cold
        starts (during one they would take a core, or the GIL, from it), by a thread of the
        workspace pool, so that this one returns at once."""
        kind = self._workspace_kind() if self._wants_workspace else None
        self._wants_workspace = False
        workspace.shared().want(kind, then=self._launcher.ahead)

    def _prepare(self) -> None:
        """The parts that outlive one child: uid lease and tmp dir (as Lambda keeps /tmp)."""
        if self._tmp_dir is None and self._volume == -1:
            self._wants_workspace = True
            ready = workspace.shared().take(self._workspace_kind())
            if ready is not None:  # made ahead (workspace.py)
                self._uid, self._tmp_dir, self._volume = ready.uid, ready.tmp_dir, ready.volume
                return
        if self._own_uid and self._uid is None:
            try:
                self._uid = self._iso.pool().acquire()
            except UidsExhausted as exc:
                raise SandboxError(str(exc)) from None  # not run: the worker requeues it
            except OSError as exc:  # the lease directory cannot be made or opened
                self._without_own_uid(f"cannot lease a sandbox uid: {exc}")
        if self._tmp_dir is None:
            self._tmp_dir = make_tmp_dir()
            if self._uid is not None:
                try:
                    os.chown(self._tmp_dir, self._uid.uid, self._uid.uid)
                except PermissionError as exc:  # refused although the capability is held
                    why = f"cannot hand the tmp dir to the sandbox uid: {exc.strerror}"
                    self._without_own_uid(why)
        if self._volume == -1 and self.enforcement.view == "private":
            self._volume = tmpvolume.attach(self.ephemeral_storage_mb, self.uid, self._iso.say_once)

    def _without_own_uid(self, why: str) -> None:
        """Run as the caller from now on, and say so once (see Isolation.without_own_uid)."""
        if self._uid is not None:
            self._uid.release()
        self._uid, self._own_uid = None, False
        self.enforcement = self._iso.without_own_uid(self.enforcement, why)

    def _spec(self, listener: Listener | None = None) -> dict[str, Any]:
        return childspec.build(self, self._iso, self._plan, self._cg_parent, self._env, listener)

    def _discard(self) -> None:
        """Kill the child and everything it started, remove its cgroup; keep tmp dir and uid."""
        child, self._child = self._child, None
        if child is None:
            return
        denied = False
        if not ready(child.fileno(), select.POLLIN, 0):
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except PermissionError:
                denied = True  # root without CAP_KILL may not signal the sandbox uid
            except OSError:
                pass
        # Every process the child started is in its group (only root could move one out), so an
        # emptied group means nothing is left; the uid kill is for when there is no group.
        emptied = self._cgroup is not None and self._cgroup.kill_all()
        uid_kill = self._uid is not None and not emptied
        if uid_kill and denied:
            # The uid's own helper can signal what the caller cannot; then the reap is prompt.
            assert self._uid is not None
            self._launcher.kill_uid(self._uid.uid)
            uid_kill = False
        # Reaped first: the uid kill waits until the uid owns no process, zombies included.
        child.wait_status(5.0)
        if uid_kill and self._uid is not None:
            self._launcher.kill_uid(self._uid.uid)
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        child.close()
        self._awaiting_ready = False

    # -- one invocation ------------------------------------------------------------------------

    def _await_ready(self, rid: str, logs: LogBuffer) -> float | Outcome:
        started = time.monotonic()
        assert self._channel is not None
        got = self._channel.wait(started + self._iso.init_timeout_s, logs)
        self._awaiting_ready = False
        if got == TIMEOUT:
            message = f"Init timed out after {self._iso.init_timeout_s:.2f} seconds"
            return self._failed(rid, logs, "timeout", aws.SANDBOX_TIMEDOUT, message, started, None)
        if got == EXITED:
            return self._exited(rid, logs, started, None)
        assert isinstance(got, bytes)
        _, init_ms, error_json = protocol.unpack_ready(got)
        if error_json is not None:
            error = orjson.loads(error_json)
            self._discard()  # as Lambda resets an environment whose init failed
            return self._outcome(
                rid, logs, "error", error, error_json, (time.monotonic() - started) * 1000, init_ms
            )
        return init_ms

    def _send_ahead(self, rid: str, payload: bytes, cc: bytes) -> bool:
        """Send a cold start's request before the ready frame (the Python runtime reads it after
        init); external runtimes get theirs once they ask for it."""
        if not isinstance(self._channel, ChildChannel):
            return False
        timeout_ms = self.timeout_s * 1000
        frame = protocol.pack_request(rid, 0.0, payload, cc, timeout_ms=timeout_ms)
        try:
            self._channel.send(frame, time.monotonic() + self._iso.init_timeout_s)
        except OSError:
            pass  # the child is gone: the wait for its ready frame says so
        return True

    def _invoke(self, rid: str, payload: bytes, logs: LogBuffer, init_ms: float | None,
                cc: bytes = b"", sent: bool = False) -> Outcome:
        assert self._channel is not None
        started = time.monotonic()
        deadline = started + self.timeout_s
        try:
            if not sent:
                deadline_ms = (time.time() + self.timeout_s) * 1000
                self._channel.send(protocol.pack_request(rid, deadline_ms, payload, cc), deadline)
            got = self._channel.wait(deadline, logs)
        except OSError:
            got = EXITED
        if got == TIMEOUT:
            message = f"Task timed out after {self.timeout_s:.2f} seconds"
            timedout = aws.SANDBOX_TIMEDOUT
            return self._failed(rid, logs, "timeout", timedout, message, started, init_ms)
        if got == EXITED:
            return self._exited(rid, logs, started, init_ms)
        assert isinstance(got, bytes)
        ok, duration_ms, rss_kb, etype, body = protocol.unpack_response(got)
        max_mb = -(-rss_kb // 1024)
        if self._cgroup is not None:
            max_mb = max(max_mb, -(-self._cgroup.peak_bytes() // MB))
        error = None if ok else orjson.loads(body)
        outcome = self._outcome(
            rid, logs, "success" if ok else "error", error, body, duration_ms, init_ms, max_mb
        )
        if etype == aws.RUNTIME_OUT_OF_MEMORY:
            self._discard()
        return outcome

    def _exited(self, rid: str, logs: LogBuffer, started: float, init_ms: float | None) -> Outcome:
        child = self._child
        status = child.wait_status(1.0) if child is not None else None
        if self._cgroup is not None and self._cgroup.oom_killed():
            etype, reason = aws.RUNTIME_OUT_OF_MEMORY, "signal: killed"
        else:
            etype, reason = aws.RUNTIME_EXIT_ERROR, describe_status(status)
        message = f"Runtime exited with error: {reason}"
        return self._failed(rid, logs, "error", etype, message, started, init_ms)

    def _failed(
        self,
        rid: str,
        logs: LogBuffer,
        status: str,
        etype: str,
        message: str,
        started: float,
        init_ms: float | None,
    ) -> Outcome:
        """A failure the platform detected: the child is killed and discarded."""
        duration_ms = (time.monotonic() - started) * 1000
        max_mb = self.memory_mb if etype == aws.RUNTIME_OUT_OF_MEMORY else self._child_peak_mb()
        if self._cgroup is not None:
            max_mb = max(max_mb, -(-self._cgroup.peak_bytes() // MB))
        if self._channel is not None:
            self._channel.drain_logs(logs)
        self._discard()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        logs.feed(f"{stamp}Z {rid} {message}\n".encode())
        error = {"errorMessage": f"RequestId: {rid} Error: {message}", "errorType": etype}
        body = orjson.dumps(error)
        return self._outcome(rid, logs, status, error, body, duration_ms, init_ms, max_mb)

    def _child_peak_mb(self) -> int:
        """The child's peak RSS read from /proc, while it still runs (for timeouts)."""
        return -(-peak_rss_kb(self._child.pid) // 1024) if self._child is not None else 0

    def _outcome(self, rid: str, logs: LogBuffer, *rest: Any) -> Outcome:
        """make_outcome (status, error, body, duration, init, peak) for this sandbox's run."""
        return make_outcome(rid, self.function_version, self.memory_mb, logs.text(), *rest)
