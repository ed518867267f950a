"""The environment a handler sees: the function's variables plus Lambda's reserved ones, no more."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Mapping

from sandbox.layers import layer_environment

RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"

# Lambda's unreserved defaults: a function may override these.
DEFAULTS = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "en_US.UTF-8",
    "TZ": "UTC",
}


def log_stream_name(version: str) -> str:
    return time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{version}]{uuid.uuid4().hex}"


def lambda_environment(
    function_env: Mapping[str, str],
    *,
    handler: str,
    function_name: str,
    function_version: str,
    memory_mb: int,
    region: str,
    code_dir: str,
    runtime_dir: str,
    tmp_dir: str,
    runtime: str = RUNTIME,
    opt_dir: str | None = None,
) -> dict[str, str]:
    """Compose the child's whole environment; reserved names always win over the function's."""
    env = dict(DEFAULTS)
    env["PATH"] = f"{code_dir}/bin:{DEFAULTS['PATH']}"  # a bundle's own tools (Lambda's /opt/bin)
    if runtime.startswith("python"):
        env["PYTHONPATH"] = code_dir
    if opt_dir is not None:  # the function's layers, merged (sandbox/layers.py)
        layer_environment(env, opt_dir, runtime, code_dir)
    env.update(function_env)
    env.update(
        {
            "_HANDLER": handler,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": function_version,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name(function_version),
            "LAMBDA_TASK_ROOT": code_dir,
            "LAMBDA_RUNTIME_DIR": runtime_dir,
            "TMPDIR": tmp_dir,
        }
    )
    return env
