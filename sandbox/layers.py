"""Where a function's layers (their merged /opt tree) show up to each runtime, as on Lambda.

Lambda unpacks a function's layers in order under /opt and points each runtime there. A Warren
worker merges them into one directory of its code cache (workers/optdir.py); without a mount
namespace that directory cannot *be* /opt, so the same places are named by its real path
(with one, where the sandbox's walls stand, it is bound read-only on /opt and these are /opt):
`opt/python` and `opt/python/lib/python3.N/site-packages` on the Python path (after the
function's own code), `opt/nodejs/node_modules` on NODE_PATH, `opt/bin` on PATH, `opt/lib` on
LD_LIBRARY_PATH, and `opt/bootstrap` for a `provided` function whose code has none.
"""

from __future__ import annotations

import os
import sys

# Set for every function with layers: code that must name a file of a layer by path uses it.
OPT_VARIABLE = "WARREN_OPT_DIR"
LAMBDA_OPT = "/opt"


def placement(opt_dir: str | None, private_view: bool) -> tuple[str | None, str | None]:
    """Where the runtime is told its layers are, and the directory to bind on /opt (if any):
    /opt itself when the sandbox has a view of its own to bind it in, else the real path."""
    if opt_dir and private_view and os.path.isdir(LAMBDA_OPT):
        return LAMBDA_OPT, opt_dir
    return opt_dir, None


def layer_environment(env: dict[str, str], opt_dir: str, runtime: str, code_dir: str) -> None:
    """Add the layer paths to a sandbox's default environment (the function's may override)."""
    env[OPT_VARIABLE] = opt_dir
    env["PATH"] = f"{env['PATH']}:{opt_dir}/bin"
    env["LD_LIBRARY_PATH"] = f"{code_dir}/lib:{opt_dir}/lib"
    if runtime.startswith("python"):
        version = runtime[len("python"):] if runtime != "python" else _here()
        env["PYTHONPATH"] = ":".join(
            (code_dir, f"{opt_dir}/python/lib/python{version}/site-packages", f"{opt_dir}/python")
        )
    elif runtime.startswith("nodejs"):
        major = runtime[len("nodejs"):].split(".")[0]
        modules = f"{opt_dir}/nodejs/node_modules"
        env["NODE_PATH"] = f"{opt_dir}/nodejs/node{major}/node_modules:{modules}"


def bootstrap(code_dir: str, opt_dir: str | None) -> str:
    """A `provided` function's bootstrap: its own code's, else the one a layer brought."""
    own = os.path.join(code_dir, "bootstrap")
    if opt_dir is not None and not os.path.lexists(own):
        layered = os.path.join(opt_dir, "bootstrap")
        if os.path.isfile(layered):
            return layered
    return own


def _here() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"
