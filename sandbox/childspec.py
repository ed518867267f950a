"""The spec a sandbox child is started with: its environment, limits, walls and code.

Sent once per cold start (as JSON, to the spare: forkserver.py) and read by child.py.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sandbox import runtimes
from sandbox.apichannel import Listener
from sandbox.cgroup import CgroupParent
from sandbox.environment import lambda_environment
from sandbox.isolation import Isolation
from sandbox.layers import placement

if TYPE_CHECKING:
    from sandbox.sandbox import Sandbox

MB = 1024 * 1024
_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))


def build(
    sb: Sandbox,
    iso: Isolation,
    plan: runtimes.Plan,
    cg_parent: CgroupParent | None,
    function_env: Mapping[str, str],
    listener: Listener | None = None,
) -> dict[str, Any]:
    """What `sb`'s next child needs to isolate itself and run its handler."""
    tmp_dir = sb.tmp_dir
    assert tmp_dir is not None
    private = sb.enforcement.view == "private"
    rlimits = iso.rlimits(sb.memory_mb, sb.ephemeral_storage_mb, sb.uid is not None,
                          cg_parent is not None)
    cgroup = None
    if cg_parent is not None:
        cgroup = {
            "parent": cg_parent.as_dict(),
            "memory_bytes": sb.memory_mb * MB,
            "max_pids": iso.max_procs,
        }
    shown_opt, bound_opt = placement(sb.opt_dir, private)
    env = lambda_environment(
        function_env,
        handler=sb.handler,
        function_name=sb.function_name,
        function_version=sb.function_version,
        memory_mb=sb.memory_mb,
        region=sb.region,
        code_dir=sb.code_dir,
        runtime_dir=_RUNTIME_DIR,
        tmp_dir="/tmp" if private else tmp_dir,
        runtime=sb.runtime,
        opt_dir=shown_opt,
    )
    spec: dict[str, Any] = {
        "code_dir": sb.code_dir,
        "handler": sb.handler,
        "arn": sb.invoked_function_arn,
        "env": env,
        "uid": sb.uid,
        "cgroup": cgroup,
        "cgroup_procs": [],
        "rlimits": rlimits,
        "tmp_dir": tmp_dir,
        "walls": {
            **iso.walls_spec(sb.enforcement, sb.network, sb.memory_mb),
            "opt_dir": bound_opt,
        },
    }
    return runtimes.exec_spec(spec, plan, listener, sb.memory_mb)
