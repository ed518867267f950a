"""`warren up`'s process tree: start the fleet's processes, restart one that dies, drain on stop."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence

DRAIN_LIMIT_S = 900.0 + 60.0  # the longest timeout, and time to finish, ack and exit
NOTE_EVERY_S = 10.0
RESTART_PAUSE_S = 1.0


class Supervisor:
    """Runs one child process per argv (`command + argv`), each restarted when it exits.

    `say` prints one line for a person (the CLI passes click.echo to stderr).
    """

    def __init__(
        self,
        command: Sequence[str],
        argvs: Sequence[Sequence[str]],
        env: Mapping[str, str],
        say: Callable[[str], None],
    ) -> None:
        self.command = list(command)
        self.argvs = [list(a) for a in argvs]
        self.env = dict(env)
        self.say = say
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def names(self) -> list[str]:
        return [argv[0] for argv in self.argvs]

    def start(self) -> None:
        for index in range(len(self.argvs)):
            self._start(index)

    def _start(self, index: int) -> None:
        self.procs[index] = subprocess.Popen([*self.command, *self.argvs[index]], env=self.env)

    def watch(self, stop: threading.Event) -> None:
        """Restart any child that exits, until `stop` is set."""
        while not stop.wait(0.5):
            for index, proc in list(self.procs.items()):
                if proc.poll() is not None:
                    self.say(
                        f"warren up: {self.argvs[index][0]} exited ({proc.returncode}); restarting"
                    )
                    time.sleep(RESTART_PAUSE_S)
                    self._start(index)

    def drain(self) -> bool:
        """SIGTERM the children and wait while they finish what they run; a second Ctrl-C (or
        SIGTERM) kills them at once. True when all of them exited on their own."""
        again = threading.Event()
        signal.signal(signal.SIGTERM, lambda _s, _f: again.set())
        signal.signal(signal.SIGINT, lambda _s, _f: again.set())
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + DRAIN_LIMIT_S
        note_at = time.monotonic() + NOTE_EVERY_S
        while True:
            running = [self.argvs[i][0] for i, p in self.procs.items() if p.poll() is None]
            if not running:
                return True
            if again.wait(0.2) or time.monotonic() > deadline:
                break
            if time.monotonic() > note_at:
                self.say(
                    f"warren up: waiting for {', '.join(running)} to finish the work it runs "
                    "(Ctrl-C again to stop now)"
                )
                note_at += NOTE_EVERY_S
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.say(
            f"warren up: killed {', '.join(running)} before it finished; work it had taken and "
            "not acked goes back to its queue"
        )
        return False
