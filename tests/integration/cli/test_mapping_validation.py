"""A mapping's source checked at `warren mapping create`, and its credentials never shown."""

from __future__ import annotations

import json
import socket

import pytest
import redis
from click.testing import CliRunner

from warren.cli import cli
from warren.redact import redact, redact_all


@pytest.fixture
def run(redis_url, unique):
    prefix = f"wv-{unique}"

    def invoke(*args):
        env = {"WARREN_REDIS_URL": redis_url, "WARREN_PREFIX": prefix}
        return CliRunner().invoke(cli, list(args), env=env, auto_envvar_prefix="WARREN")

    yield invoke
    conn = redis.Redis.from_url(redis_url)
    keys = list(conn.scan_iter(f"{prefix}:*"))
    if keys:
        conn.delete(*keys)
    conn.close()


@pytest.fixture
def function(run, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text("def handler(event, context):\n    return None\n")
    result = run("function", "create", "reader", "--code", str(code), "--handler", "app.handler")
    assert result.exit_code == 0, result.output
    return "reader"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("schedule:rate(0 minutes)", "positive whole number"),
        ("schedule:cron(99 * * * ? *)", "99 is outside 0-59"),
        ("schedule:every day", "schedule"),
        ("redis+stream:///", "a stream source looks like"),
        ("amqp://user:s3cret@127.0.0.1:5672/%2F/", "a queue source looks like"),
        ("s3:///prefix", "a bucket source looks like"),
    ],
)
def test_a_malformed_source_is_refused_at_create_in_one_line_without_its_password(
    run, function, source, message
):
    result = run("mapping", "create", "--function", function, "--source", source)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert message in result.output
    assert "s3cret" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    listed = run("mapping", "list", "--output", "json")
    assert json.loads(listed.stdout) == []  # nothing was created


def test_an_unreachable_endpoint_is_a_warning_and_the_mapping_is_created(run, function):
    port = _closed_port()
    source = f"amqp://user:s3cret@127.0.0.1:{port}/%2F/orders"
    result = run("mapping", "create", "--function", function, "--source", source,
                 "--output", "json")
    assert result.exit_code == 0, result.output
    assert f"127.0.0.1:{port} does not answer now" in result.stderr
    created = json.loads(result.stdout)
    assert created["source"] == f"amqp://user:***@127.0.0.1:{port}/%2F/orders"


def test_credentials_in_a_source_never_show_in_list_get_or_status(run, function):
    source = "amqp://user:s3cret@127.0.0.1:5672/%2F/orders"
    created = json.loads(
        run("mapping", "create", "--function", function, "--source", source,
            "--output", "json").stdout
    )
    for args in (
        ("mapping", "list"),
        ("mapping", "list", "--output", "json"),
        ("mapping", "get", created["uuid"]),
        ("mapping", "get", created["uuid"], "--output", "json"),
        ("mapping", "disable", created["uuid"], "--output", "json"),
    ):
        result = run(*args)
        assert result.exit_code == 0, result.output
        assert "s3cret" not in result.output, args
        assert "user:***@" in result.output, args


def test_redact_masks_url_passwords_and_secret_query_values():
    assert redact("amqp://u:p@h:1/v/q") == "amqp://u:***@h:1/v/q"
    assert redact("no redis://:pw@host:6379/0 now") == "no redis://:***@host:6379/0 now"
    assert redact("s3://b/p?endpoint=http://k:s@h:9000&secret=x&suffix=.jpg") == (
        "s3://b/p?endpoint=http://k:***@h:9000&secret=***&suffix=.jpg"
    )
    assert redact("schedule:rate(5 minutes)") == "schedule:rate(5 minutes)"
    assert redact_all({"a": ["amqp://u:p@h/q", 3]}) == {"a": ["amqp://u:***@h/q", 3]}
