"""Session fixtures for the real services the tests talk to.

Each fixture takes a `WARREN_TEST_*` URL when set (CI and `make test` set them). Otherwise it
uses the service on its default local port if one answers, then testcontainers where a Docker
engine exists; failing all that it skips, except under CI=true, where a missing service fails.
"""

from __future__ import annotations

import gc
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

# The queue source tests' broker fixtures (channel, queue, store), shared by two files;
# `world`: a fleet's stores with the in-memory broker, for the router's and workers' loops;
# private PostgreSQL and Mosquitto servers for the table and MQTT sources; `own_redis`: a Redis
# of the handlers' own (the fleet's is behind the sandbox's wall).
pytest_plugins = [
    "support.queue_kit", "support.memory_fleet", "support.private_services", "support.own_redis",
]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Workers started by the tests keep their sandboxes off the default uid range: the network wall
# they install (nftables rules on their range, node-wide) then never touches the sandboxes of a
# real worker, or of another checkout's tests, running on the same machine.
os.environ.setdefault("WARREN_SANDBOX_UID_BASE", "700000")


def _answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _url_answers(url: str) -> bool:
    parts = urlsplit(url)
    default = {"amqp": 5672, "redis": 6379, "http": 80}.get(parts.scheme, 80)
    return _answers(parts.hostname or "127.0.0.1", parts.port or default)


def _missing(what: str) -> None:
    message = f"{what} is not reachable: set WARREN_TEST_{what.upper()}_URL or start it"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _docker_available() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, check=False
    ).returncode == 0


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    url = os.environ.get("WARREN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    if _url_answers(url):
        yield url
        return
    if _docker_available():
        from testcontainers.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:3.13") as rabbit:
            host, port = rabbit.get_container_host_ip(), rabbit.get_exposed_port(5672)
            yield f"amqp://guest:guest@{host}:{port}/%2F"
            return
    _missing("amqp")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("WARREN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    if _url_answers(url):
        yield url
        return
    if _docker_available():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7") as redis:
            host, port = redis.get_container_host_ip(), redis.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
            return
    _missing("redis")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible endpoint: WARREN_TEST_S3_URL, else moto's server started here."""
    url = os.environ.get("WARREN_TEST_S3_URL")
    if url:
        if not _url_answers(url):
            _missing("s3")
        yield url
        return
    if _docker_available():
        from testcontainers.minio import MinioContainer

        with MinioContainer() as minio:
            cfg = minio.get_config()
            os.environ.setdefault("AWS_ACCESS_KEY_ID", cfg["access_key"])
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", cfg["secret_key"])
            yield f"http://{cfg['endpoint']}"
            return
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not _answers("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                _missing("s3")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True, scope="session")
def _aws_test_credentials() -> None:
    # boto3 insists on credentials; moto accepts any. Never the developer's real ones.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "warren-test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "warren-test")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def unique() -> str:
    """A short unique token to put in every queue, key prefix and bucket a test creates."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def conn(redis_url: str) -> Iterator[Any]:
    """A Redis client of the test's own, closed after it."""
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def fleet(amqp_url: str, redis_url: str, unique: str, tmp_path: Any) -> Iterator[Any]:
    """A fleet under a unique prefix (tests/support/fleet.py), torn down after."""
    from support.fleet import make_fleet

    f = make_fleet(amqp_url, redis_url, unique, tmp_path)
    yield f
    f.close()


def _sandbox_tables() -> set[str]:
    nft = shutil.which("nft")
    if nft is None or os.geteuid() != 0:
        return set()
    done = subprocess.run([nft, "list", "tables"], capture_output=True, text=True, check=False)
    return {line.split()[-1] for line in done.stdout.splitlines()
            if line.startswith("table inet warren_sandbox_")}


@pytest.fixture(autouse=True, scope="session")
def _remove_the_network_walls_the_tests_installed() -> Iterator[None]:
    """The workers and sandboxes under test install nftables tables on their uid ranges
    (sandbox/netwall.py); they outlive the processes, as they should in production. Remove the
    ones this session added, so that the machine is left as it was found."""
    before = _sandbox_tables()
    yield
    for table in _sandbox_tables() - before:
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, check=False)


@pytest.fixture(autouse=True, scope="session")
def _collect_garbage_sockets_at_the_end() -> Iterator[None]:
    """Collect, at session end, sockets that only a reference cycle still held.

    A redis-py connection caught in a cycle (a client referenced from a thread's frame that
    ended late) is closed by the garbage collector; with `filterwarnings = error` the
    ResourceWarning it raises would fail the whole run after every test passed. Each test's
    own leaks still fail that test; this only sweeps what is left once all have run.
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
        gc.collect()


# ---- the registry (tests/integration/registry/) --------------------------------------------------


@pytest.fixture
def make_registry(conn: Any, unique: str) -> Iterator[Any]:
    """Registries under a unique prefix (optionally with another account limit)."""
    from warren.store.codes import CodeStore
    from warren.store.registry import Registry

    prefix = f"test-{unique}"

    def make(account_concurrency: int = 1000) -> Registry:
        codes = CodeStore(conn, prefix)
        return Registry(conn, codes, prefix, account_concurrency=account_concurrency)

    yield make
    keys = list(conn.scan_iter(f"{prefix}:*"))
    if keys:
        conn.delete(*keys)


@pytest.fixture
def registry(make_registry: Any) -> Any:
    return make_registry()


@pytest.fixture
def code(tmp_path: Any) -> Any:
    """A code directory with one handler, `app.handler`, that returns its event."""
    root = tmp_path / "code"
    root.mkdir()
    (root / "app.py").write_text("def handler(event, context):\n    return event\n")
    return root
