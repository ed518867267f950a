"""Functions with layers through a real fleet: Python, Node and `provided`, in order, deleted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.fleet import Fleet
from support.layers import PACKAGE, importable_here, pip_layer, tree
from support.runtimes import PY_CLIENT, need_node

from warren.errors import NotFound

pytestmark = pytest.mark.slow

PY_HANDLER = f"""
import subprocess
import {PACKAGE}
import shared

def handler(event, context):
    tool = subprocess.run(["layertool"], capture_output=True, text=True).stdout.strip()
    return {{"table": {PACKAGE}.tabulate([[1, 2]]), "shared": shared.WHO, "tool": tool,
             "from": {PACKAGE}.__file__}}
"""

ONLY_SHARED = """
import shared

def handler(event, context):
    return {"shared": shared.WHO}
"""


def _layer(fleet: Fleet, tmp: Path, name: str, files: dict[str, str], *extra: str) -> int:
    tree(tmp / name, files, executable=tuple(f for f in files if f.startswith("bin/")))
    made = fleet.cli("layer", "publish", name, "--code", str(tmp / name), *extra,
                     "--output", "json")
    assert made.returncode == 0, made.stderr
    body = json.loads(made.stdout)
    assert body["name"] == name
    return int(body["version"])


def test_python_functions_import_a_pypi_package_and_run_tools_only_their_layers_bring(
    fleet: Fleet, tmp_path: Path
) -> None:
    # Given a layer holding a real PyPI package (pip install --target) that Warren lacks
    assert not importable_here(PACKAGE)
    deps = tmp_path / "deps"
    pip_layer(deps)
    made = fleet.cli("layer", "publish", "deps", "--code", str(deps),
                     "--compatible-runtime", "python3.11", "--output", "json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["version"] == 1
    # And two layers that both bring shared.py and bin/layertool
    _layer(fleet, tmp_path, "base", {"python/shared.py": "WHO = 'base'\n",
                                     "bin/layertool": "#!/bin/sh\necho base\n"})
    _layer(fleet, tmp_path, "top", {"python/shared.py": "WHO = 'top'\n",
                                    "bin/layertool": "#!/bin/sh\necho top\n"})
    listed = fleet.cli("layer", "list", "--output", "json")
    assert [x["name"] for x in json.loads(listed.stdout)] == ["base", "deps", "top"]
    shown = fleet.cli("layer", "list", "top")
    assert shown.returncode == 0 and b"top" in shown.stdout
    code = tree(tmp_path / "code", {"app.py": PY_HANDLER})
    fleet.worker(slots=2)
    made = fleet.cli("function", "create", "withdeps", "--code", str(code), "--handler",
                     "app.handler", "--runtime", "python3.11", "--layers", "deps:1,base:1",
                     "--layers", "top:1", "--output", "json")
    assert made.returncode == 0, made.stderr
    assert [x["name"] for x in json.loads(made.stdout)["layers"]] == ["deps", "base", "top"]
    fleet.client.create_function("reversed", code=tree(tmp_path / "c2", {"app.py": ONLY_SHARED}),
                                 handler="app.handler", layers=["top:1", "base:1"])
    fleet.client.create_function("nolayers", code=code, handler="app.handler")
    # When each is invoked
    out = fleet.client.invoke("withdeps", {})
    rev = fleet.client.invoke("reversed", {})
    bare = fleet.client.invoke("nolayers", {})
    # Then the package came from the layer, and the later layer won, for modules and tools
    assert out.function_error is None, out.payload
    assert out.payload["table"].split() == ["-", "-", "1", "2", "-", "-"]
    assert "/python/tabulate" in out.payload["from"]
    assert out.payload["shared"] == "top" and out.payload["tool"] == "top"
    assert rev.payload == {"shared": "base"}
    # And without its layers the same code cannot import the package
    assert bare.function_error == "Unhandled"
    assert bare.payload["errorType"] == "Runtime.ImportModuleError"
    # When the layer version is deleted, the function that uses it keeps running it
    assert fleet.cli("layer", "delete", "deps:1").returncode == 0
    gone = fleet.cli("layer", "get", "deps:1")
    assert gone.returncode == 3 and b"does not exist" in gone.stderr
    fleet.client.update_function("withdeps", description="after the delete")
    again = fleet.client.invoke("withdeps", {})
    assert again.function_error is None and again.payload["shared"] == "top"
    # But no function can take it up any more
    with pytest.raises(NotFound):
        fleet.client.update_function("nolayers", layers=["deps:1"])


NODE_HANDLER = """
const pad = require("padder");
exports.handler = async (event) => ({ padded: pad(String(event.n), 5), from: pad.origin });
"""

NODE_MODULE = """
module.exports = (s, n) => s.padStart(n, "0");
module.exports.origin = __filename;
"""

LAYER_BOOTSTRAP = PY_CLIENT + """
while True:
    status, headers, event = call("GET", "invocation/next")
    rid = headers["Lambda-Runtime-Aws-Request-Id"]
    body = json.dumps({"bootstrap": sys.argv[0], "event": json.loads(event)})
    call("POST", f"invocation/{rid}/response", body.encode())
"""


def test_a_node_module_and_a_provided_bootstrap_come_from_layers(
    fleet: Fleet, tmp_path: Path
) -> None:
    need_node()
    _layer(fleet, tmp_path, "padder", {"nodejs/node_modules/padder/index.js": NODE_MODULE},
           "--compatible-runtime", "nodejs20.x")
    tree(tmp_path / "boot", {"bootstrap": LAYER_BOOTSTRAP}, executable=("bootstrap",))
    made = fleet.cli("layer", "publish", "boot", "--code", str(tmp_path / "boot"))
    assert made.returncode == 0, made.stderr
    fleet.worker(slots=2)
    fleet.client.create_function("padfn", code=tree(tmp_path / "n", {"index.js": NODE_HANDLER}),
                                 handler="index.handler", runtime="nodejs20.x",
                                 layers=["padder:1"])
    fleet.client.create_function("custom", code=tree(tmp_path / "p", {"README": "no bootstrap"}),
                                 handler="anything", runtime="provided.al2023", layers=["boot:1"])
    node = fleet.client.invoke("padfn", {"n": 42})
    custom = fleet.client.invoke("custom", {"k": "v"})
    assert node.function_error is None, node.payload
    assert node.payload["padded"] == "00042"
    assert "/nodejs/node_modules/padder/index.js" in node.payload["from"]
    assert custom.function_error is None, custom.payload
    assert custom.payload["event"] == {"k": "v"}
    assert custom.payload["bootstrap"].endswith("/bootstrap")
    assert "/opt-" in custom.payload["bootstrap"]
