"""deploy/ agrees with the code: real commands and options, queue names, env vars, privileges."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import string
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from sandbox.uidpool import DEFAULT_LOCK_DIR
from warren.cli import cli
from warren.function import TIMEOUT_MAX_S
from warren.keys import DEFAULT_POOL, Keys
from warren.settings import DEFAULT_AMQP_URL, DEFAULT_REDIS_URL, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
K8S = sorted((DEPLOY / "k8s").rglob("*.yaml"))
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / "systemd" / "warren.env.example"
UNIT_BINARY = "/opt/warren/bin/warren"
INIT_LIMIT_S = 10  # the sandbox's init phase limit (Lambda's), on top of the function timeout
DRAIN_S = TIMEOUT_MAX_S + INIT_LIMIT_S


def _yaml() -> Any:
    return pytest.importorskip("yaml", reason="PyYAML is not installed (pip install pyyaml)")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in _yaml().safe_load_all(path.read_text()) if d is not None]


def _k8s(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    found = [d for p in K8S for d in _docs(p) if d.get("kind") == kind]
    return [d for d in found if name is None or d["metadata"]["name"] == name]


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def _env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and line[0] != "#"]
    return dict(line.split("=", 1) for line in lines)


def _unit_argvs(env_file: dict[str, str] | None = None) -> list[list[str]]:
    """ExecStart argvs with ${VAR} expanded as systemd does: Environment=, then the file."""
    argvs = []
    for path in UNITS:
        service = _unit(path)["Service"]
        env = dict(w.split("=", 1) for w in shlex.split(service.get("Environment", "")))
        env.update(env_file or {})
        argv = shlex.split(string.Template(service["ExecStart"]).substitute(env))
        assert argv[0] == UNIT_BINARY, f"{path.name} does not start {UNIT_BINARY}"
        argvs.append(argv[1:])
    return argvs


def _compose_services() -> dict[str, Any]:
    services: dict[str, Any] = _docs(COMPOSE)[0]["services"]
    return services


def _fleet_argvs() -> list[tuple[str, list[str]]]:
    """Every `warren ...` argv in the units, the compose fleet and the k8s containers."""
    argvs = [(f"systemd {a[0]}", a) for a in _unit_argvs()]
    argvs += [(f"systemd+env {a[0]}", a) for a in _unit_argvs(_env_file(ENV_EXAMPLE))]
    for name, service in _compose_services().items():
        if "build" in service:
            argvs.append((f"compose {name}", list(service["command"])))
    for deployment in _k8s("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            argvs.append((f"k8s {container['name']}", list(container["args"])))
    return argvs


def _worker_container() -> dict[str, Any]:
    (deployment,) = _k8s("Deployment", "warren-worker")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _option_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


# -- every file parses ----------------------------------------------------------------------


def test_every_yaml_file_parses_and_names_its_kind():
    assert K8S and COMPOSE.exists()
    for path in K8S:
        docs = _docs(path)
        assert docs, f"{path} is empty"
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{path}: {doc}"
            assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "warren"
    assert set(_compose_services()) >= {
        "rabbitmq", "redis", "s3", "worker", "router", "poller", "gateway", "prometheus",
        "grafana",
    }


# -- the commands are real ------------------------------------------------------------------


def test_the_fleet_runs_the_four_long_running_processes():
    names = {argv[0] for _, argv in _fleet_argvs()}
    assert names == {"worker", "router", "poller", "gateway"}
    for where in ("systemd", "compose", "k8s"):
        assert {a[0] for w, a in _fleet_argvs() if w.startswith(where)} == names, where


@pytest.mark.parametrize("where,argv", _fleet_argvs(), ids=lambda v: str(v))
def test_every_command_and_option_named_exists_in_the_cli(where, argv):
    # --help after the options: click still parses them, so an unknown option or a bad value
    # fails here exactly as it would at start-up, without starting the process.
    result = CliRunner().invoke(cli, [*argv, "--help"], catch_exceptions=False)
    assert result.exit_code == 0, f"{where}: warren {' '.join(argv)}: {result.output}"
    assert "Usage:" in result.output


def test_python_m_warren_serves_the_processes_the_image_runs():
    for name in ("worker", "router", "poller", "gateway"):
        done = subprocess.run(
            [sys.executable, "-m", "warren", name, "--help"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert f"Usage: warren {name}" in done.stdout


def test_an_unknown_command_or_option_would_be_caught():
    runner = CliRunner()
    assert runner.invoke(cli, ["wokrer", "--help"]).exit_code != 0
    assert runner.invoke(cli, ["worker", "--slot", "4", "--help"]).exit_code != 0


# -- environment variables named in deploy/ are ones the code reads -------------------------


def _read_in_source(name: str) -> bool:
    for room in ("warren", "broker_adapters", "router", "workers", "sandbox", "gateway"):
        for path in (ROOT / room).rglob("*.py"):
            if f'"{name}"' in path.read_text():
                return True
    return False


def _deploy_envvars() -> dict[str, str]:
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.lstrip("#").strip()
        if re.match(r"^[A-Z_]+=", line):
            found[line.split("=", 1)[0]] = "warren.env.example"
    for name, service in _compose_services().items():
        if "build" in service:
            found.update(dict.fromkeys(service.get("environment", {}), f"compose {name}"))
    for kind, name, field in (("ConfigMap", "warren-config", "data"),
                              ("Secret", "warren-connection", "stringData")):
        (doc,) = _k8s(kind, name)
        found.update(dict.fromkeys(doc[field], f"{kind} {name}"))
    return found


def test_every_env_var_deploy_sets_is_read_by_warren_a_unit_or_boto3():
    units = " ".join(_unit(p)["Service"]["ExecStart"] for p in UNITS)
    found = _deploy_envvars()
    assert {"WARREN_AMQP_URL", "WARREN_REDIS_URL", "WARREN_PREFIX"} <= set(found)
    for name, where in found.items():
        if name.startswith("AWS_"):
            continue  # boto3's own credential chain (bucket sources)
        assert _read_in_source(name) or f"${{{name}}}" in units, f"{where} sets {name}: unread"


def test_the_env_file_cannot_contradict_the_flags_it_feeds(monkeypatch):
    # The worker's process also sees WARREN_WORKER_SLOTS, which click reads as --slots: resolve
    # both the way click does (make_context parses and resolves, it never runs the worker).
    env = _env_file(ENV_EXAMPLE)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (argv,) = [a for a in _unit_argvs(env) if a[0] == "worker"]
    root = cli.make_context("warren", list(argv), auto_envvar_prefix="WARREN")
    with root:
        command = cli.get_command(root, "worker")
        ctx = command.make_context("worker", argv[1:], parent=root)
        assert ctx.params["slots"] == int(env["WARREN_WORKER_SLOTS"])
        assert ctx.params["pool_name"] == env["WARREN_WORKER_POOL"]
        monkeypatch.setenv("WARREN_WORKER_SLOTS", "0")  # the auto env var is live: 0 is refused
        with pytest.raises(click.BadParameter):
            command.make_context("worker", [], parent=root)


def test_the_env_example_matches_the_settings_defaults():
    values = _env_file(ENV_EXAMPLE)
    settings = Settings.from_environ(values)
    defaults = Settings.from_environ({"WARREN_AMQP_URL": DEFAULT_AMQP_URL,
                                      "WARREN_REDIS_URL": DEFAULT_REDIS_URL})
    # The same places as the defaults, as Warren's own user rather than guest / no password
    assert (settings.amqp.host, settings.amqp.port, settings.amqp.vhost) == (
        defaults.amqp.host, defaults.amqp.port, defaults.amqp.vhost)
    assert (settings.redis.host, settings.redis.port, settings.redis.db) == (
        defaults.redis.host, defaults.redis.port, defaults.redis.db)
    assert settings.amqp.username == "warren" and "warren:" in settings.redis.url
    assert settings.prefix == Settings.from_environ({}).prefix
    assert int(values["WARREN_WORKER_SLOTS"]) >= 1


# -- autoscaling reads the queue the workers consume ----------------------------------------


def test_keda_scales_the_worker_on_the_work_queue_the_topology_derives():
    (config,) = _k8s("ConfigMap", "warren-config")
    prefix = config["data"]["WARREN_PREFIX"]
    assert prefix == Settings.from_environ({}).prefix
    pool = _option_value(_worker_container()["args"], "--pool")
    assert pool == DEFAULT_POOL
    (scaled,) = _k8s("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "warren-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    meta = trigger["metadata"]
    assert meta["queueName"] == Keys(prefix).work_queue(pool) == "warren.work.default"
    assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata values are strings"
    assert meta["mode"] == "QueueLength" and meta["protocol"] == "http"
    # value = slots: a busy worker holds exactly --slots unacked messages (prefetch = slots)
    assert meta["value"] == _option_value(_worker_container()["args"], "--slots")
    assert meta["vhostName"] == Settings.from_environ({}).amqp.vhost


def test_keda_authentication_points_at_a_secret_key_that_exists():
    (scaled,) = _k8s("ScaledObject")
    (auth,) = _k8s("TriggerAuthentication", scaled["spec"]["triggers"][0]["authenticationRef"]
                   ["name"])
    for ref in auth["spec"]["secretTargetRef"]:
        (secret,) = _k8s("Secret", ref["name"])
        host = secret["stringData"][ref["key"]]
        assert ref["parameter"] == "host" and host.startswith("http") and host.endswith(":15672/")


def test_the_hpa_alternative_targets_the_same_queue_and_deployment():
    (hpa,) = _k8s("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "warren-worker"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["selector"]["matchLabels"]["queue"] == (
        Keys().work_queue()
    )
    hpa_path = next(p for p in K8S if "HorizontalPodAutoscaler" in p.read_text())
    assert hpa_path.parent.name == "alternatives", "kubectl apply -f deploy/k8s/ must not take both"


# -- drain and privileges -------------------------------------------------------------------


def test_the_worker_unit_drains_for_the_longest_function():
    service = _unit(DEPLOY / "systemd" / "warren-worker.service")["Service"]
    assert service["EnvironmentFile"] == "/etc/warren/warren.env"
    assert service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] == "mixed", "sandboxes must not get the SIGTERM"
    assert int(service["TimeoutStopSec"]) >= DRAIN_S
    assert "User" not in service and "DynamicUser" not in service  # root: own uid per sandbox
    for path in UNITS:
        assert _unit(path)["Service"]["EnvironmentFile"] == "/etc/warren/warren.env"


def test_the_worker_pod_drains_runs_as_root_and_is_alone_on_its_node():
    (deployment,) = _k8s("Deployment", "warren-worker")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= DRAIN_S
    context = _worker_container()["securityContext"]
    assert context["runAsUser"] == 0
    assert {"SETUID", "SETGID", "CHOWN"} <= set(context["capabilities"]["add"])
    assert "SYS_ADMIN" not in context["capabilities"]["add"]
    mounts = {m["name"]: m["mountPath"] for m in _worker_container()["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert mounts["sandbox-uids"] == DEFAULT_LOCK_DIR
    # No hostPath (the namespace enforces `baseline`): one worker pod per node instead.
    assert "emptyDir" in volumes["sandbox-uids"]
    assert not any("hostPath" in v for v in volumes.values())
    (term,) = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert "hostUsers" not in spec


def test_pods_use_probes_and_no_service_account_token_and_the_namespace_enforces_baseline():
    (namespace,) = _k8s("Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    for deployment in _k8s("Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False
        (container,) = spec["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_compose_worker_drains_and_shares_uid_leases():
    worker = _compose_services()["worker"]
    assert worker["user"] == "root" and worker["stop_signal"] == "SIGTERM"
    assert int(worker["stop_grace_period"].rstrip("s")) >= DRAIN_S
    assert f"sandbox-uids:{DEFAULT_LOCK_DIR}" in worker["volumes"]
    for name in ("worker", "router", "poller"):
        env = _compose_services()[name]["environment"]
        assert Settings.from_environ(env).amqp.host == "rabbitmq"
        assert Settings.from_environ(env).redis.host == "redis"


def test_the_lead_services_are_kept_as_ensure_services_uses_them():
    services = _compose_services()
    assert services["rabbitmq"] == {
        "image": "rabbitmq:4.2.5-management", "ports": ["5672:5672", "15672:15672"],
        "volumes": ["rabbitmq-data:/var/lib/rabbitmq"],
    }
    # Warren's registry and code bundles live in Redis: it keeps them across a restart
    assert services["redis"] == {
        "image": "redis:8.4.2", "ports": ["6379:6379"], "volumes": ["redis-data:/data"],
        "command": ["redis-server", "--appendonly", "yes", "--appendfsync", "everysec"],
    }
    assert services["s3"] == {
        "image": "versity/versitygw:v1.8.0", "command": ["--port", ":9000", "posix", "/data"],
        "environment": {"ROOT_ACCESS_KEY": "warren-test", "ROOT_SECRET_KEY": "warren-test"},
        "volumes": ["s3-data:/data"], "ports": ["${S3_PORT:-9310}:9000"],
    }
    # Every image is pinned to a release: no floating tags in a deploy.
    for name, service in services.items():
        if "image" in service and "build" not in service:
            assert re.search(r":v?\d+\.\d+\.\d+(-\w+)?$", service["image"]), name
    script = (DEPLOY / "ensure-services.sh").read_text()
    assert "up -d rabbitmq redis s3" in script
    assert "--appendonly yes" in script  # the Redis it starts itself keeps its data too
    assert 'bash "$here/deploy/service-credentials.sh"' in script


def test_the_compose_fleet_builds_the_dockerfile():
    for name in ("worker", "router", "poller"):
        build = _compose_services()[name]["build"]
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == (
            DEPLOY / "Dockerfile"
        )


# -- the image -------------------------------------------------------------------------------


def test_the_dockerfile_copies_every_package_setup_cfg_installs():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    copied = set()
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        sources = line.split()[:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
            copied.add(source)
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    packages = {p.strip() for p in setup["options.packages.find"]["include"].split()}
    assert {p for p in packages if "." not in p} <= copied
    assert setup["metadata"]["long_description"].split(":")[1].strip() in copied
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "warren"]' in text


# -- systemd ---------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    # verify insists that ExecStart's binary exists: stand one in for /opt/warren/bin/warren.
    shim = tmp_path / "warren"
    shim.write_text("#!/bin/sh\nexit 0\n")
    shim.chmod(0o755)
    for path in UNITS:
        text = path.read_text().replace(UNIT_BINARY, str(shim))
        # ExecStartPost waits for /readyz with the install's own python: the same stand-in.
        text = text.replace(UNIT_BINARY.rsplit("/", 1)[0] + "/python", str(shim))
        (tmp_path / path.name).write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", *[str(tmp_path / p.name) for p in UNITS]],
        capture_output=True, text=True, timeout=60,
    )
    complaints = [
        line for line in (done.stdout + done.stderr).splitlines()
        if any(p.name in line for p in UNITS)
    ]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr


def test_readme_states_what_the_tests_measure():
    text = (DEPLOY / "README.md").read_text()
    for needle in ("CAP_SYS_ADMIN", "SETUID", "KillMode=mixed", "warren.work.default",
                   DEFAULT_LOCK_DIR, "hostUsers", "cgroup v2"):
        assert needle in text, needle
    assert textwrap.dedent(text).count("```") % 2 == 0
