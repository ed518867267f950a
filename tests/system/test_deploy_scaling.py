"""deploy/ scales and drains the fleet as the code expects: KEDA or HPA, drains, pods."""

from __future__ import annotations

from support.deploy import (
    DEPLOY,
    DRAIN_S,
    K8S,
    UNITS,
    compose_services,
    k8s,
    option_value,
    unit,
    worker_container,
)

from sandbox.uidpool import DEFAULT_LOCK_DIR
from warren.keys import DEFAULT_POOL, Keys
from warren.settings import Settings


def test_keda_scales_the_worker_on_the_work_queue_the_topology_derives():
    (config,) = k8s("ConfigMap", "warren-config")
    prefix = config["data"]["WARREN_PREFIX"]
    assert prefix == Settings.from_environ({}).prefix
    pool = option_value(worker_container()["args"], "--pool")
    assert pool == DEFAULT_POOL
    (scaled,) = k8s("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "warren-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    meta = trigger["metadata"]
    assert meta["queueName"] == Keys(prefix).work_queue(pool) == "warren.work.default"
    assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata values are strings"
    assert meta["mode"] == "QueueLength" and meta["protocol"] == "http"
    # value = slots: a busy worker holds exactly --slots unacked messages (prefetch = slots)
    assert meta["value"] == option_value(worker_container()["args"], "--slots")
    assert meta["vhostName"] == Settings.from_environ({}).amqp.vhost


def test_keda_authentication_points_at_a_secret_key_that_exists():
    (scaled,) = k8s("ScaledObject")
    (auth,) = k8s("TriggerAuthentication", scaled["spec"]["triggers"][0]["authenticationRef"]
                   ["name"])
    for ref in auth["spec"]["secretTargetRef"]:
        (secret,) = k8s("Secret", ref["name"])
        host = secret["stringData"][ref["key"]]
        assert ref["parameter"] == "host" and host.startswith("http") and host.endswith(":15672/")


def test_the_hpa_alternative_targets_the_same_queue_and_deployment():
    (hpa,) = k8s("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "warren-worker"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["selector"]["matchLabels"]["queue"] == (
        Keys().work_queue()
    )
    hpa_path = next(p for p in K8S if "HorizontalPodAutoscaler" in p.read_text())
    assert hpa_path.parent.name == "alternatives", "kubectl apply -f deploy/k8s/ must not take both"


# -- drain and privileges -------------------------------------------------------------------


def test_the_worker_unit_drains_for_the_longest_function():
    service = unit(DEPLOY / "systemd" / "warren-worker.service")["Service"]
    assert service["EnvironmentFile"] == "/etc/warren/warren.env"
    assert service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] == "mixed", "sandboxes must not get the SIGTERM"
    assert int(service["TimeoutStopSec"]) >= DRAIN_S
    assert "User" not in service and "DynamicUser" not in service  # root: own uid per sandbox
    for path in UNITS:
        assert unit(path)["Service"]["EnvironmentFile"] == "/etc/warren/warren.env"


def test_the_worker_pod_drains_runs_as_root_and_is_alone_on_its_node():
    (deployment,) = k8s("Deployment", "warren-worker")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] >= DRAIN_S
    context = worker_container()["securityContext"]
    assert context["runAsUser"] == 0
    assert {"SETUID", "SETGID", "CHOWN"} <= set(context["capabilities"]["add"])
    assert "SYS_ADMIN" not in context["capabilities"]["add"]
    mounts = {m["name"]: m["mountPath"] for m in worker_container()["volumeMounts"]}
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
    (namespace,) = k8s("Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    for deployment in k8s("Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False
        (container,) = spec["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_compose_worker_drains_and_shares_uid_leases():
    worker = compose_services()["worker"]
    assert worker["user"] == "root" and worker["stop_signal"] == "SIGTERM"
    assert int(worker["stop_grace_period"].rstrip("s")) >= DRAIN_S
    assert f"sandbox-uids:{DEFAULT_LOCK_DIR}" in worker["volumes"]
    for name in ("worker", "router", "poller"):
        env = compose_services()[name]["environment"]
        assert Settings.from_environ(env).amqp.host == "rabbitmq"
        assert Settings.from_environ(env).redis.host == "redis"
