"""Start a competitor's worker command in its own process group and stop the whole group."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType


class WorkerDied(RuntimeError):
    """The worker command exited while the benchmark still needed it."""


class WorkerGroup:
    """One worker command and every process it forks, owned by PID and process group.

    The command runs as the leader of a new session, so its process group id is its PID and
    every pool child it forks stays in that group: stopping signals the group, never a name.
    Its output goes to a temporary log whose tail is shown if it dies early.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
        self._log = tempfile.NamedTemporaryFile(  # closed in stop()
            prefix="warren-bench-worker-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid = self.proc.pid
        self._stopped = False

    def __enter__(self) -> WorkerGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise WorkerDied(f"worker {self.proc.args!r} exited with {code}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        text = Path(self._log.name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM the group (both frameworks shut down warmly on it), then SIGKILL leftovers."""
        if self._stopped:
            return
        self._stopped = True
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout=5)
        # Pool children may outlive their leader by a moment; nothing of ours may stay behind.
        deadline = time.monotonic() + 5
        while self._group_exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._group_exists():
            self._signal(signal.SIGKILL)
        self._log.close()
        os.unlink(self._log.name)

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.pgid, signum)
        except ProcessLookupError:
            pass

    def _group_exists(self) -> bool:
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        return True
