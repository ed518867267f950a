"""In the child: become an external runtime's bootstrap (exec), or say why it cannot start.

Runs after the child has isolated itself (child.py), so the bootstrap inherits the cgroup, the
rlimits, the uid, the scrubbed environment and the code directory as its working directory. The
control socket stays open only to report a failed exec as an init error (Runtime.InvalidEntrypoint,
Lambda's type); a successful exec closes it. Standard library only (see protocol.py).
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from sandbox import protocol


def exec_bootstrap(spec: dict[str, Any], ctrl_fd: int) -> None:
    """Replace this process with `spec["exec"]`; on failure report it and exit. Never returns."""
    argv = list(spec["exec"])
    os.set_inheritable(ctrl_fd, False)
    try:
        os.execve(argv[0], argv, os.environ)
    except OSError as exc:
        if exc.errno == 2 and not os.path.exists(argv[0]):
            message = f"Couldn't find valid bootstrap(s): [{argv[0]}]"
        else:
            message = f"fork/exec {argv[0]}: {exc.strerror or exc}"
    error = {"errorMessage": message, "errorType": "Runtime.InvalidEntrypoint"}
    try:
        os.write(2, f"{message}\n".encode())
        socket.socket(fileno=ctrl_fd).sendall(protocol.pack_ready(0.0, json.dumps(error).encode()))
    finally:
        os._exit(127)
