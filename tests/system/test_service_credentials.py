"""deploy/service-credentials.sh: Warren's own RabbitMQ and Redis users, idempotently, guest kept.

Runs the script against the shared services with a user name of the test's own (removed after),
so the `warren` user a real `make services` made is left alone, and so are guest and Redis's
default user, which the rest of the suite still uses.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
import redis

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "service-credentials.sh"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("rabbitmqctl") is None or shutil.which("redis-cli") is None,
    reason="needs root, rabbitmqctl and redis-cli on this machine",
)


@pytest.fixture
def service_user(unique: str, redis_url: str) -> Iterator[str]:
    name = f"warren-test-{unique}"
    yield name
    subprocess.run(["rabbitmqctl", "-q", "delete_user", name], capture_output=True, check=False)
    client = redis.Redis.from_url(redis_url)
    client.acl_deluser(name)
    client.close()


def _run(user: str, env_file: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WARREN_SERVICE_USER": user, "WARREN_ENV_FILE": str(env_file)}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def _urls(env_file: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)


def test_the_service_user_is_added_once_and_its_urls_work_and_stay_secret(
    service_user: str, tmp_path: Path, amqp_url: str, redis_url: str
) -> None:
    env_file = tmp_path / "warren.env"
    env_file.write_text("WARREN_PREFIX=kept\n")
    first = _run(service_user, env_file)
    urls = _urls(env_file)
    # Run again: the same passwords, the operator's other settings untouched
    second = _run(service_user, env_file)
    assert _urls(env_file) == urls and urls["WARREN_PREFIX"] == "kept"
    assert stat.S_IMODE(env_file.stat().st_mode) in (0o600, 0o640)
    for output in (first.stdout + first.stderr, second.stdout + second.stderr):
        for url in (urls["WARREN_AMQP_URL"], urls["WARREN_REDIS_URL"]):
            password = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
            assert password not in output
    # The URLs log in as the new user
    client = redis.Redis.from_url(urls["WARREN_REDIS_URL"])
    assert client.acl_whoami() == service_user
    client.close()
    connection = pika.BlockingConnection(pika.URLParameters(urls["WARREN_AMQP_URL"]))
    connection.channel().queue_declare("", exclusive=True)
    connection.close()
    # And guest and Redis's default user still work, for everyone else on the box
    redis.Redis.from_url(redis_url).ping()
    pika.BlockingConnection(pika.URLParameters(amqp_url)).close()


def test_a_wrong_password_in_rabbitmq_is_put_right_from_the_env_file(
    service_user: str, tmp_path: Path
) -> None:
    env_file = tmp_path / "warren.env"
    _run(service_user, env_file)
    subprocess.run(["rabbitmqctl", "-q", "change_password", service_user, "drifted"],
                   capture_output=True, check=True)
    _run(service_user, env_file)
    pika.BlockingConnection(pika.URLParameters(_urls(env_file)["WARREN_AMQP_URL"])).close()
