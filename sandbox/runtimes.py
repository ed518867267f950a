"""Which runtimes this machine can run, and how a sandbox starts each one.

`python3.N` (only this interpreter's N) runs on the fork-server fast path. Every other runtime
is a program the sandbox child execs, talking to a Runtime API endpoint of its own: `provided*`
runs the code's own `bootstrap`, `nodejs*` runs Warren's Node bootstrap on the machine's `node`.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from sandbox import layers
from sandbox.netns import Inside
from warren.errors import InvalidParameter

PYTHON_HERE = f"python{sys.version_info.major}.{sys.version_info.minor}"
NODE_NAMES = ("nodejs18.x", "nodejs20.x", "nodejs22.x")
PROVIDED_NAMES = ("provided", "provided.al2", "provided.al2023")
NODE_BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node", "bootstrap.mjs")
# V8 reserves ~0.7 GB of address space before it runs a line: under an address-space rlimit (no
# cgroup) an external runtime gets this much on top of its memory, or Node could not start.
EXEC_AS_HEADROOM_MB = 1024


@dataclass(frozen=True)
class Plan:
    """How to start one runtime: `argv` None means the Python fast path."""

    runtime: str
    argv: tuple[str, ...] | None = None

    @property
    def external(self) -> bool:
        return self.argv is not None


@functools.lru_cache(maxsize=1)
def node_binary() -> str | None:
    """The machine's `node` (Debian names it `nodejs` too), if it runs; looked up once."""
    for name in ("node", "nodejs"):
        path = shutil.which(name, path=os.environ.get("PATH", os.defpath) + ":/usr/local/bin")
        if path is None:
            continue
        try:
            out = subprocess.run(
                [path, "--version"], capture_output=True, timeout=10, check=True, text=True
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if out.stdout.startswith("v"):
            return os.path.realpath(path)
    return None


def available() -> tuple[str, ...]:
    """The runtime names a sandbox on this machine can run."""
    names = [PYTHON_HERE]
    if node_binary() is not None:
        names.extend(NODE_NAMES)
    names.extend(PROVIDED_NAMES)
    return tuple(names)


def plan(runtime: str | None, code_dir: str, memory_mb: int, opt_dir: str | None = None) -> Plan:
    """How to start `runtime` for the code in `code_dir`; InvalidParameter if it cannot run here."""
    if runtime is None or runtime == PYTHON_HERE:
        return Plan(runtime or PYTHON_HERE)
    if runtime in NODE_NAMES:
        node = node_binary()
        if node is not None:
            # Lambda sizes the old generation to the function's memory; the cgroup (or the
            # address-space rlimit) still holds the whole process to it.
            flags = (f"--max-old-space-size={memory_mb}",)
            return Plan(runtime, (node, *flags, NODE_BOOTSTRAP))
        raise InvalidParameter(
            f"runtime {runtime} cannot run here: no `node` found on its PATH "
            f"(install Node.js, e.g. `apt-get install nodejs`); it can run {', '.join(available())}"
        )
    if runtime in PROVIDED_NAMES:
        return Plan(runtime, (layers.bootstrap(code_dir, opt_dir),))
    raise InvalidParameter(
        f"runtime {runtime} cannot run on this machine: it can run {', '.join(available())}"
    )


def exec_spec(
    spec: dict[str, Any], plan: Plan, listener: socket.socket | Inside | None, memory_mb: int
) -> dict[str, Any]:
    """An external runtime's child spec: exec its bootstrap, point it at its API (`listener`)."""
    if listener is None or plan.argv is None:
        return spec  # the Python fast path
    if isinstance(listener, Inside):  # network none: made in the child's namespace
        address = listener.address
    else:
        host, port = listener.getsockname()[:2]
        address = f"{host}:{port}"
    spec["exec"] = list(plan.argv)
    spec["env"]["AWS_LAMBDA_RUNTIME_API"] = address
    if "as" in spec["rlimits"]:
        spec["rlimits"]["as"] = (memory_mb + EXEC_AS_HEADROOM_MB) * 1024 * 1024
    return spec
