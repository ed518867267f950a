"""What the deploy tests read: deploy/'s YAML, units, env files and the commands they run."""

from __future__ import annotations

import configparser
import shlex
import string
from pathlib import Path
from typing import Any

import pytest

from warren.function import TIMEOUT_MAX_S

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
K8S = sorted((DEPLOY / "k8s").rglob("*.yaml"))
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / "systemd" / "warren.env.example"
UNIT_BINARY = "/opt/warren/bin/warren"
INIT_LIMIT_S = 10  # the sandbox's init phase limit (Lambda's), on top of the function timeout
DRAIN_S = TIMEOUT_MAX_S + INIT_LIMIT_S


def yaml_lib() -> Any:
    return pytest.importorskip("yaml", reason="PyYAML is not installed (pip install pyyaml)")


def docs_of(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml_lib().safe_load_all(path.read_text()) if d is not None]


def k8s(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    found = [d for p in K8S for d in docs_of(p) if d.get("kind") == kind]
    return [d for d in found if name is None or d["metadata"]["name"] == name]


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and line[0] != "#"]
    return dict(line.split("=", 1) for line in lines)


def unit_argvs(env_file: dict[str, str] | None = None) -> list[list[str]]:
    """ExecStart argvs with ${VAR} expanded as systemd does: Environment=, then the file."""
    argvs = []
    for path in UNITS:
        service = unit(path)["Service"]
        env = dict(w.split("=", 1) for w in shlex.split(service.get("Environment", "")))
        env.update(env_file or {})
        argv = shlex.split(string.Template(service["ExecStart"]).substitute(env))
        assert argv[0] == UNIT_BINARY, f"{path.name} does not start {UNIT_BINARY}"
        argvs.append(argv[1:])
    return argvs


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = docs_of(COMPOSE)[0]["services"]
    return services


def fleet_argvs() -> list[tuple[str, list[str]]]:
    """Every `warren ...` argv in the units, the compose fleet and the k8s containers."""
    argvs = [(f"systemd {a[0]}", a) for a in unit_argvs()]
    argvs += [(f"systemd+env {a[0]}", a) for a in unit_argvs(env_file(ENV_EXAMPLE))]
    for name, service in compose_services().items():
        if "build" in service:
            argvs.append((f"compose {name}", list(service["command"])))
    for deployment in k8s("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            argvs.append((f"k8s {container['name']}", list(container["args"])))
    return argvs


def worker_container() -> dict[str, Any]:
    (deployment,) = k8s("Deployment", "warren-worker")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def option_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


# -- every file parses ----------------------------------------------------------------------
