"""The walls between tenants and the fleet, one test per wall, through the Sandbox itself.

Each runs the probe handler (support/handlers/walls/probe.py) as root would run it in a worker:
a uid of its own, a private mount namespace, the nftables deny list. Where a wall cannot be
built here (not root, no namespaces, no nft), the test skips with the sandbox's own reason; CI
runs as root, where a wall that is down fails instead.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from support.runtimes import code_dir, need_node

from sandbox import Isolation, Sandbox
from warren.errors import InvalidParameter

PROBE = os.path.join(os.path.dirname(__file__), "..", "..", "support", "handlers", "walls")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def postgres_like() -> Iterator[int]:
    """A service on the worker's loopback that the operator did not list (a local PostgreSQL)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield int(server.getsockname()[1])


@pytest.fixture
def fleet_env(amqp_url: str, redis_url: str) -> dict[str, str]:
    return {
        "WARREN_AMQP_URL": amqp_url,
        "WARREN_REDIS_URL": redis_url,
        "WARREN_SANDBOX_UID_BASE": os.environ["WARREN_SANDBOX_UID_BASE"],
    }


def _host_port(url: str, default: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default


def need_walls(sb: Sandbox, network: bool = True) -> None:
    down = sb.enforcement.view != "private" or (network and sb.enforcement.network != "deny-list")
    if down:
        reason = "walls down: " + "; ".join(sb.enforcement.unenforced)
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def probe(fleet_env: dict[str, str]) -> Iterator[Any]:
    made: list[Sandbox] = []

    def run(event: dict[str, Any], env: dict[str, str] | None = None, **kw: Any) -> Any:
        iso = Isolation.from_environ({**fleet_env, **(env or {})})
        sb = Sandbox(PROBE, "probe.handler", isolation=iso, timeout_s=30, **kw)
        made.append(sb)
        need_walls(sb)
        out = sb.invoke(event)
        assert out.ok, out.logs
        return sb, out.result["walls"], out.result

    yield run
    for sb in made:
        sb.close()


def test_tmp_is_private_empty_writable_and_tmpdir_points_at_it(probe: Any) -> None:
    sb, walls, _ = probe({})
    assert walls["tmp"] == {"ok": True, "seen": [], "TMPDIR": "/tmp"}
    assert os.path.isdir(sb.tmp_dir)
    tmp = sb.tmp_dir
    sb.close()
    assert not os.path.exists(tmp)  # removed when the sandbox ends


def test_dev_shm_is_private_and_writable(probe: Any) -> None:
    _, walls, _ = probe({})
    assert walls["shm"] == {"ok": True, "seen": []}


def test_no_host_directory_is_writable(probe: Any) -> None:
    _, walls, _ = probe({})
    assert walls["host_dirs"] == {"ok": True, "writable": []}


def test_a_handler_sees_only_its_own_processes_and_cannot_signal_or_trace_others(
    probe: Any,
) -> None:
    _, walls, _ = probe({"outsider_pid": os.getpid()})
    assert walls["processes"]["ok"], walls["processes"]
    assert walls["signals"]["signal"] in ("EPERM", "ESRCH")
    assert walls["signals"]["ptrace"] in ("EPERM", "ESRCH")


def test_the_fleets_redis_and_rabbitmq_and_metadata_are_refused_other_loopback_services_answer(
    probe: Any, amqp_url: str, redis_url: str, postgres_like: int
) -> None:
    redis_host, redis_port = _host_port(redis_url, 6379)
    amqp_host, amqp_port = _host_port(amqp_url, 5672)
    deny = [[redis_host, redis_port], [amqp_host, amqp_port], ["127.0.0.2", redis_port],
            ["169.254.169.254", 80]]
    _, walls, _ = probe({"deny": deny, "allow": [["127.0.0.1", postgres_like]]})
    assert walls["control_plane"]["ok"], walls["control_plane"]
    assert "Connection refused" in walls["control_plane"][f"{redis_host}:{redis_port}"]
    assert "Connection refused" in walls["control_plane"][f"{amqp_host}:{amqp_port}"]
    assert walls["outbound"]["ok"], walls["outbound"]


def test_warren_sandbox_deny_adds_addresses(probe: Any, postgres_like: int) -> None:
    env = {"WARREN_SANDBOX_DENY": f"127.0.0.1:{postgres_like}"}
    _, walls, _ = probe({"deny": [["127.0.0.1", postgres_like]]}, env=env)
    assert "Connection refused" in walls["control_plane"][f"127.0.0.1:{postgres_like}"]


def test_network_none_leaves_no_network_at_all(probe: Any, postgres_like: int) -> None:
    _, walls, _ = probe({"allow": [["127.0.0.1", postgres_like]]}, network="none")
    assert not walls["outbound"]["ok"]
    assert walls["tmp"]["ok"] and walls["processes"]["ok"]  # the other walls stand too


def test_an_unknown_network_mode_is_refused() -> None:
    with code_dir({"bootstrap": "#!/bin/sh\n"}) as path, pytest.raises(InvalidParameter):
        Sandbox(path, "x", runtime="provided.al2023", network="host")


# An address outside this machine (TEST-NET-3): unreachable from an empty namespace.
EXTERNAL = ("203.0.113.7", 80)

NODE_REACH = """
const net = require("net");
const reach = (host, port) => new Promise((done) => {
  const s = net.connect(port, host);
  s.setTimeout(3000);
  s.on("connect", () => { s.destroy(); done("connected"); });
  s.on("error", (e) => done(e.code));
  s.on("timeout", () => { s.destroy(); done("timeout"); });
});
exports.handler = async (event) => {
  const seen = {};
  for (const [host, port] of event.targets) seen[host + ":" + port] = await reach(host, port);
  return { seen, api: process.env.AWS_LAMBDA_RUNTIME_API };
};
"""


def _node_reach(fleet_env: dict[str, str], network: str, targets: list[list[Any]]) -> Any:
    need_node()
    with code_dir({"index.js": NODE_REACH}, executable=()) as path:
        iso = Isolation.from_environ(fleet_env)
        with Sandbox(path, "index.handler", runtime="nodejs20.x", isolation=iso,
                     timeout_s=30, memory_mb=256, network=network) as sb:
            need_walls(sb, network=False)
            first = sb.invoke({"targets": targets})
            second = sb.invoke({"targets": []})  # warm: the same runtime asks again
            assert first.ok and second.ok, first.logs + second.logs
            assert second.init_ms is None
            return first.result


def test_network_none_gives_a_node_handler_its_runtime_api_and_nothing_else(
    fleet_env: dict[str, str], redis_url: str, postgres_like: int
) -> None:
    redis = list(_host_port(redis_url, 6379))
    targets = [redis, ["127.0.0.1", postgres_like], list(EXTERNAL)]
    got = _node_reach(fleet_env, "none", targets)
    assert got["api"] == "127.0.0.1:9001"  # made inside its namespace (sandbox/netns.py)
    seen = got["seen"]
    assert seen[f"{redis[0]}:{redis[1]}"] == "ECONNREFUSED"  # nothing listens in its namespace
    assert seen[f"127.0.0.1:{postgres_like}"] == "ECONNREFUSED"  # reachable without network none
    assert seen[f"{EXTERNAL[0]}:{EXTERNAL[1]}"] == "ENETUNREACH"  # no route out at all


def test_without_network_none_the_same_node_handler_reaches_the_loopback(
    fleet_env: dict[str, str], postgres_like: int
) -> None:
    got = _node_reach(fleet_env, "default", [["127.0.0.1", postgres_like]])
    assert got["seen"] == {f"127.0.0.1:{postgres_like}": "connected"}
    assert got["api"] != "127.0.0.1:9001"


SHELL_NO_NETWORK = """#!/bin/sh
set -u
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -D "$HEADERS" "$API/invocation/next")
  RID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  TARGET=$(echo "$EVENT" | tr -d '"')  # the event: a JSON string "host:port"
  curl -s -o /dev/null --max-time 3 "http://$TARGET/"; CODE=$?
  curl -sS -o /dev/null -X POST "$API/invocation/$RID/response" -d "{\\"curl\\": $CODE}"
done
"""


@pytest.mark.parametrize("target", ["redis", "external"])
def test_network_none_serves_a_provided_bootstrap_that_cannot_reach_out(
    fleet_env: dict[str, str], redis_url: str, target: str
) -> None:
    if shutil.which("curl") is None:  # deploy/ensure-services.sh installs it
        pytest.skip("the shell bootstrap needs curl")
    host, port = _host_port(redis_url, 6379) if target == "redis" else EXTERNAL
    with code_dir({"bootstrap": SHELL_NO_NETWORK}) as path:
        iso = Isolation.from_environ(fleet_env)
        with Sandbox(path, "x", runtime="provided.al2023", isolation=iso, timeout_s=30,
                     network="none") as sb:
            need_walls(sb, network=False)
            first = sb.invoke(f"{host}:{port}")
            again = sb.invoke(f"{host}:{port}")
    assert first.ok and again.ok, first.logs
    # curl's exit 7: could not connect (refused, or no route); never a reply from the service.
    assert first.result == again.result == {"curl": 7}


def test_the_fleets_credentials_never_reach_a_handler(
    probe: Any, monkeypatch: pytest.MonkeyPatch, amqp_url: str, redis_url: str
) -> None:
    monkeypatch.setenv("WARREN_AMQP_URL", amqp_url)
    monkeypatch.setenv("WARREN_REDIS_URL", redis_url)
    _, walls, _ = probe({})
    assert walls["credentials"] == {"ok": True, "leaked": []}


def test_a_second_tenant_finds_neither_the_first_tenants_files_nor_its_processes(
    probe: Any,
) -> None:
    first, walls, seen = probe({"leave": "tenant-one-secret"})
    assert walls["tmp"]["ok"]
    files = ["/tmp/tenant-one-secret", "/dev/shm/tenant-one-secret", first.tmp_dir,
             os.path.join(first.tmp_dir, "tenant-one-secret")]
    _, walls, _ = probe({"peek_files": files, "peek_pids": [first.pid, seen["pid"]]})
    assert walls["other_tenant"] == {"ok": True, "found": []}
    # And the first tenant still has its file (kept while warm, as Lambda keeps /tmp)
    again = first.invoke({"peek_files": ["/tmp/tenant-one-secret"]}).result["walls"]
    assert again["other_tenant"]["found"] == ["/tmp/tenant-one-secret"]


NODE_PROBE = """
const fs = require("fs"), net = require("net");
const reach = (host, port) => new Promise((done) => {
  const s = net.connect(port, host);
  s.setTimeout(2000);
  s.on("connect", () => { s.destroy(); done("connected"); });
  s.on("error", (e) => done(e.code));
  s.on("timeout", () => { s.destroy(); done("timeout"); });
});
exports.handler = async (event) => {
  const me = process.getuid();
  const others = fs.readdirSync("/proc").filter((n) => /^[0-9]+$/.test(n)).filter((n) => {
    try { return fs.statSync("/proc/" + n).uid !== me; } catch (e) { return false; }
  });
  let varTmp = "writable";
  try { fs.writeFileSync("/var/tmp/walls-" + process.pid, "x"); } catch (e) { varTmp = e.code; }
  fs.writeFileSync("/tmp/mine", "x");
  return { tmp: fs.readdirSync("/tmp"), tmpdir: process.env.TMPDIR, others: others.length,
           redis: await reach(event.host, event.port), varTmp };
};
"""


def test_a_node_handler_gets_the_same_walls(fleet_env: dict[str, str], redis_url: str) -> None:
    need_node()
    host, port = _host_port(redis_url, 6379)
    # Not under /tmp: a code dir there is bound back into the sandbox's /tmp (see mountwalls).
    os.makedirs("/var/tmp/warren-test", mode=0o755, exist_ok=True)
    path = tempfile.mkdtemp(prefix="walls-node-", dir="/var/tmp/warren-test")
    os.chmod(path, 0o755)
    with open(os.path.join(path, "index.js"), "w") as f:
        f.write(NODE_PROBE)
    os.chmod(os.path.join(path, "index.js"), 0o644)
    try:
        iso = Isolation.from_environ(fleet_env)
        with Sandbox(path, "index.handler", runtime="nodejs20.x", isolation=iso,
                     timeout_s=30, memory_mb=256) as sb:
            need_walls(sb)
            out = sb.invoke({"host": host, "port": port})
            assert out.ok, out.logs
            assert out.result == {"tmp": ["mine"], "tmpdir": "/tmp", "others": 0,
                                  "redis": "ECONNREFUSED", "varTmp": "EROFS"}
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_tmp_is_capped_at_ephemeral_storage_apart_from_memory(fleet_env: dict[str, str]) -> None:
    iso = Isolation.from_environ(fleet_env)
    with Sandbox(PROBE, "fill.handler", isolation=iso, memory_mb=128, timeout_s=120,
                 ephemeral_storage_mb=512) as sb:
        need_walls(sb, network=False)
        if sb.invoke({"max_mb": 0}).result["size_mb"] > 10240:  # the host's disk: no volume
            reason = "no /tmp volume here (loop devices, mkfs.ext4): see the sandbox's warning"
            pytest.fail(reason) if IN_CI else pytest.skip(reason)
        out = sb.invoke({})
        # A 128 MB function fills its 512 MB /tmp (page cache is reclaimed, not counted as
        # memory that stays) and then gets ENOSPC; the host's disk is not touched.
        assert out.ok, out.logs
        assert out.result["errno"] == errno.ENOSPC
        assert 480 <= out.result["wrote_mb"] <= 512 and out.result["size_mb"] <= 520
        assert sb.invoke({"name": "fill"}).result["listing"] == ["fill"]  # still usable
    with Sandbox(PROBE, "fill.handler", isolation=iso, ephemeral_storage_mb=1024,
                 timeout_s=60) as big:
        assert 1000 <= big.invoke({"max_mb": 1}).result["size_mb"] <= 1040


def test_tmp_survives_a_reset_of_the_same_sandbox_and_a_new_one_starts_empty(
    fleet_env: dict[str, str],
) -> None:
    iso = Isolation.from_environ(fleet_env)
    with Sandbox(PROBE, "fill.handler", isolation=iso, timeout_s=60) as sb:
        need_walls(sb, network=False)
        assert sb.invoke({"max_mb": 2, "name": "kept"}).result["listing"] == ["kept"]
        old_pid = sb.pid
        os.kill(old_pid, 9)  # the child dies: the next invoke starts a fresh one
        for _ in range(2000):
            if not sb.alive:
                break
            time.sleep(0.005)
        again = sb.invoke({"max_mb": 1, "name": "second"})
        assert sb.pid != old_pid and again.result["listing"] == ["kept", "second"]
    with Sandbox(PROBE, "fill.handler", isolation=iso, timeout_s=60) as fresh:
        assert fresh.invoke({"max_mb": 1}).result["listing"] == ["fill"]


def test_ephemeral_storage_outside_512_to_10240_is_refused() -> None:
    for bad in (511, 10241, "512"):
        with pytest.raises(InvalidParameter, match="ephemeral storage"):
            Sandbox(PROBE, "fill.handler", ephemeral_storage_mb=bad)


def test_layers_show_up_read_only_at_opt_as_on_lambda(fleet_env: dict[str, str], tmp_path) -> None:
    # Given a merged layer tree (as a worker's optdir builds it) with a Python package and a file
    opt = tmp_path / "opt-merged"
    (opt / "python").mkdir(parents=True)
    (opt / "python" / "layered.py").write_text("WHERE = __file__\n")
    (opt / "data.txt").write_text("from a layer\n")
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(
        "import os\nimport layered\n"
        "def handler(event, context):\n"
        "    try:\n"
        "        open('/opt/new.txt', 'w')\n"
        "        writable = True\n"
        "    except OSError:\n"
        "        writable = False\n"
        "    return {'where': layered.WHERE, 'data': open('/opt/data.txt').read(),\n"
        "            'opt': os.environ.get('WARREN_OPT_DIR'), 'writable': writable}\n"
    )
    for path in (tmp_path, opt, opt / "python", code):
        path.chmod(0o755)
    for path in (opt / "python" / "layered.py", opt / "data.txt", code / "app.py"):
        path.chmod(0o644)
    iso = Isolation.from_environ(fleet_env)
    # When a sandbox with walls runs a handler of a function with layers
    with Sandbox(str(code), "app.handler", isolation=iso, opt_dir=str(opt)) as sb:
        need_walls(sb, network=False)
        out = sb.invoke({})
    # Then its layers are at /opt, on the Python path from there, and read-only
    assert out.ok, out.logs
    assert out.result == {"where": "/opt/python/layered.py", "data": "from a layer\n",
                          "opt": "/opt", "writable": False}
