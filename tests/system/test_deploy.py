"""deploy/ agrees with the code: real commands and options, queue names, env vars, privileges."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
import textwrap

import click
import pytest
from click.testing import CliRunner
from support.deploy import (
    COMPOSE,
    DEPLOY,
    ENV_EXAMPLE,
    K8S,
    ROOT,
    UNIT_BINARY,
    UNITS,
    compose_services,
    docs_of,
    env_file,
    fleet_argvs,
    k8s,
    unit,
    unit_argvs,
)

from sandbox.uidpool import DEFAULT_LOCK_DIR
from warren.cli import cli
from warren.settings import DEFAULT_AMQP_URL, DEFAULT_REDIS_URL, Settings


def test_every_yaml_file_parses_and_names_its_kind():
    assert K8S and COMPOSE.exists()
    for path in K8S:
        docs = docs_of(path)
        assert docs, f"{path} is empty"
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{path}: {doc}"
            assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "warren"
    assert set(compose_services()) >= {
        "rabbitmq", "redis", "s3", "worker", "router", "poller", "gateway", "prometheus",
        "grafana",
    }


# -- the commands are real ------------------------------------------------------------------


def test_the_fleet_runs_the_four_long_running_processes():
    names = {argv[0] for _, argv in fleet_argvs()}
    assert names == {"worker", "router", "poller", "gateway"}
    for where in ("systemd", "compose", "k8s"):
        assert {a[0] for w, a in fleet_argvs() if w.startswith(where)} == names, where


@pytest.mark.parametrize("where,argv", fleet_argvs(), ids=lambda v: str(v))
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
    for name, service in compose_services().items():
        if "build" in service:
            found.update(dict.fromkeys(service.get("environment", {}), f"compose {name}"))
    for kind, name, field in (("ConfigMap", "warren-config", "data"),
                              ("Secret", "warren-connection", "stringData")):
        (doc,) = k8s(kind, name)
        found.update(dict.fromkeys(doc[field], f"{kind} {name}"))
    return found


def test_every_env_var_deploy_sets_is_read_by_warren_a_unit_or_boto3():
    units = " ".join(unit(p)["Service"]["ExecStart"] for p in UNITS)
    found = _deploy_envvars()
    assert {"WARREN_AMQP_URL", "WARREN_REDIS_URL", "WARREN_PREFIX"} <= set(found)
    for name, where in found.items():
        if name.startswith("AWS_"):
            continue  # boto3's own credential chain (bucket sources)
        assert _read_in_source(name) or f"${{{name}}}" in units, f"{where} sets {name}: unread"


def test_the_env_file_cannot_contradict_the_flags_it_feeds(monkeypatch):
    # The worker's process also sees WARREN_WORKER_SLOTS, which click reads as --slots: resolve
    # both the way click does (make_context parses and resolves, it never runs the worker).
    env = env_file(ENV_EXAMPLE)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (argv,) = [a for a in unit_argvs(env) if a[0] == "worker"]
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
    values = env_file(ENV_EXAMPLE)
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


def test_the_lead_services_are_kept_as_ensure_services_uses_them():
    services = compose_services()
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
        build = compose_services()[name]["build"]
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
