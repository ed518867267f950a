"""`warren mapping ...` via CliRunner on real Redis: validation, Lambda's states, counters."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import redis
from click.testing import CliRunner

from warren.cli import cli
from warren.store.mappings import MappingStore

KIND = '{"data": {"kind": ["order"]}}'
NUMERIC = '{"data": {"n": [{"numeric": [">", 1]}]}}'


@pytest.fixture
def prefix(redis_url, unique):
    prefix = f"wm-{unique}"
    yield prefix
    conn = redis.Redis.from_url(redis_url)
    keys = list(conn.scan_iter(f"{prefix}:*"))
    if keys:
        conn.delete(*keys)
    conn.close()


@pytest.fixture
def run(redis_url, prefix):
    def invoke(*args):
        env = {"WARREN_REDIS_URL": redis_url, "WARREN_PREFIX": prefix}
        return CliRunner().invoke(cli, list(args), env=env, auto_envvar_prefix="WARREN")

    return invoke


@pytest.fixture
def function(run, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text("def handler(event, context):\n    return None\n")
    result = run("function", "create", "reader", "--code", str(code), "--handler", "app.handler")
    assert result.exit_code == 0, result.output
    return "reader"


def ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def error_line(result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    return result.output.strip()


def test_create_applies_lambdas_defaults_per_source_kind(run, function):
    stream = ok(run("mapping", "create", "--function", function, "--source",
                    "redis+stream:///orders", "-o", "json"))
    queue = ok(run("mapping", "create", "--function", function, "--source",
                   "amqp://guest:guest@127.0.0.1:5672/%2F/jobs", "-o", "json"))
    assert (stream["kind"], stream["batch_size"], stream["max_retries"], stream["max_age_s"]) == (
        "stream", 100, -1, -1)
    assert (queue["kind"], queue["batch_size"]) == ("queue", 10)
    # No poller is running, so the store completes Creating itself.
    assert stream["state"] == "Enabled"
    assert stream["stats"]["read"] == 0
    assert stream["stats"]["last_result"] == "No records processed"


def test_create_with_every_option_round_trips_through_get(run, function):
    created = ok(run(
        "mapping", "create", "--function", f"{function}:$LATEST", "--source",
        "redis+stream://127.0.0.1:6379/0/events", "--batch-size", "500", "--window", "5",
        "--start-position", "at-timestamp:2024-01-31T12:00:00Z",
        "--filter", KIND, "--filter", NUMERIC,
        "--report-item-failures", "--bisect", "--max-retries", "3", "--max-age", "3600",
        "--on-failure", "redis+stream:///failed", "--max-concurrency", "4",
        "--parallelization-factor", "10", "-o", "json",
    ))
    got = ok(run("mapping", "get", created["uuid"], "-o", "json"))
    assert got["function"] == f"{function}:$LATEST"
    assert (got["batch_size"], got["window_s"], got["max_retries"], got["max_age_s"]) == (
        500, 5.0, 3, 3600)
    assert got["filters"] == [KIND, NUMERIC]
    assert got["report_item_failures"] and got["bisect"]
    assert got["on_failure"] == "redis+stream:///failed"
    assert got["max_concurrency"] == 4
    assert got["parallelization_factor"] == 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "ftp://x/y"], "unknown source"),
        (["--source", "redis+stream:///s", "--batch-size", "0"], "--batch-size must be 1..10000"),
        (["--source", "redis+stream:///s", "--batch-size", "10001"], "--batch-size"),
        (["--source", "redis+stream:///s", "--window", "301"], "--window must be 0..300"),
        (["--source", "redis+stream:///s", "--max-retries", "-2"], "--max-retries"),
        (["--source", "redis+stream:///s", "--max-retries", "10001"], "--max-retries"),
        (["--source", "redis+stream:///s", "--max-age", "59"], "--max-age"),
        (["--source", "redis+stream:///s", "--max-concurrency", "1"], "--max-concurrency"),
        (["--source", "redis+stream:///s", "--on-failure", "http://x"], "--on-failure"),
        (["--source", "redis+stream:///s", "--start-position", "yesterday"], "start position"),
        (["--source", "redis+stream:///s", "--filter", '{"data": "x"}'], "invalid filter pattern"),
        (["--source", "schedule:rate(5 minutes)", "--batch-size", "2"], "one event per tick"),
        (["--source", "redis+stream:///s", "--parallelization-factor", "0"],
         "--parallelization-factor must be 1..10"),
        (["--source", "redis+stream:///s", "--parallelization-factor", "11"],
         "--parallelization-factor must be 1..10"),
        (["--source", "amqp://guest:guest@127.0.0.1:5672/%2F/q", "--parallelization-factor", "2"],
         "applies to streams only"),
    ],
)
def test_create_rejects_bad_settings_in_one_line(run, function, args, message):
    line = error_line(run("mapping", "create", "--function", function, *args))
    assert message in line


def test_create_refuses_an_unknown_function(run, function):
    line = error_line(run("mapping", "create", "--function", "nope", "--source", "redis+stream:///s"))
    assert "nope" in line


def test_update_changes_settings_and_bumps_the_revision(run, function):
    created = ok(run("mapping", "create", "--function", function, "--source",
                     "redis+stream:///s", "-o", "json"))
    updated = ok(run("mapping", "update", created["uuid"], "--batch-size", "7", "--bisect",
                     "--filter", '{"data": {"a": [1]}}', "-o", "json"))
    assert (updated["batch_size"], updated["bisect"], updated["revision"]) == (7, True, 2)
    assert created["parallelization_factor"] == 1
    parallel = ok(run("mapping", "update", created["uuid"], "--parallelization-factor", "4",
                      "-o", "json"))
    assert (parallel["parallelization_factor"], parallel["revision"]) == (4, 3)
    assert "--parallelization-factor" in error_line(
        run("mapping", "update", created["uuid"], "--parallelization-factor", "12"))
    cleared = ok(run("mapping", "update", created["uuid"], "--filter", "", "-o", "json"))
    assert cleared["filters"] == []
    assert "nothing to update" in error_line(run("mapping", "update", created["uuid"]))


def test_disable_enable_delete_follow_lambdas_states(run, function, redis_url, prefix):
    uuid = ok(run("mapping", "create", "--function", function, "--source",
                  f"redis+stream:///{prefix}-s", "-o", "json"))["uuid"]
    assert ok(run("mapping", "disable", uuid, "-o", "json"))["state"] == "Disabled"
    assert ok(run("mapping", "enable", uuid, "-o", "json"))["state"] == "Enabled"
    # While a poller holds the mapping, the change waits for it: Disabling, Deleting.
    conn = redis.Redis.from_url(redis_url)
    conn.set(f"{prefix}:mapping:{uuid}:lease", "some-poller", px=60_000)
    assert ok(run("mapping", "disable", uuid, "-o", "json"))["state"] == "Disabling"
    assert ok(run("mapping", "delete", uuid, "-o", "json"))["state"] == "Deleting"
    assert ok(run("mapping", "get", uuid, "-o", "json"))["state"] == "Deleting"
    conn.delete(f"{prefix}:mapping:{uuid}:lease")
    conn.xgroup_create(f"{prefix}-s", f"warren-{uuid}", id="0", mkstream=True)
    ok(run("mapping", "delete", uuid, "-o", "json"))
    assert "not found" in error_line(run("mapping", "get", uuid))
    assert not list(conn.scan_iter(f"{prefix}:mapping:{uuid}:*"))
    assert conn.xinfo_groups(f"{prefix}-s") == []  # the stream's consumer group went too
    conn.delete(f"{prefix}-s")
    conn.close()


def test_created_while_a_poller_lives_it_stays_creating(run, function, redis_url, prefix):
    conn = redis.Redis.from_url(redis_url)
    conn.zadd(f"{prefix}:pollers", {"p1": int(time.time() * 1000) + 60_000})
    created = ok(run("mapping", "create", "--function", function, "--source",
                     "redis+stream:///s", "-o", "json"))
    assert created["state"] == "Creating"
    conn.close()


def test_list_and_get_show_the_counters(run, function, redis_url, prefix):
    uuid = ok(run("mapping", "create", "--function", function, "--source",
                  "redis+stream:///s", "-o", "json"))["uuid"]
    store = MappingStore(redis.Redis.from_url(redis_url), prefix)
    store.count(uuid, {"read": 10, "filtered": 2, "invoked": 8, "succeeded": 7, "failed": 1,
                       "destination": 1}, lag_s=1.5, last_result="OK")
    stats = ok(run("mapping", "get", uuid, "-o", "json"))["stats"]
    assert stats == {"read": 10, "filtered": 2, "invoked": 8, "succeeded": 7, "failed": 1,
                     "destination": 1, "batches": 0, "lag_s": 1.5, "last_result": "OK"}
    table = run("mapping", "list")
    assert uuid in table.stdout and "Enabled" in table.stdout
    [row] = ok(run("mapping", "list", "--function", function, "-o", "json"))
    assert row["uuid"] == uuid
    assert ok(run("mapping", "list", "--function", "other", "-o", "json")) == []
    [summary] = store.summaries()
    assert summary["uuid"] == uuid and summary["succeeded"] == 7 and summary["lag_s"] == 1.5


def test_unreachable_redis_is_one_clear_line():
    env = {"WARREN_REDIS_URL": "redis://127.0.0.1:1/0", "WARREN_PREFIX": "x"}
    result = CliRunner().invoke(cli, ["mapping", "list"], env=env, auto_envvar_prefix="WARREN")
    assert result.exit_code == 5  # fleet unavailable
    assert "cannot reach Redis" in result.output


def test_the_cli_runs_as_a_real_process(redis_url, prefix):
    env = {"WARREN_REDIS_URL": redis_url, "WARREN_PREFIX": prefix, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "warren", "mapping", "list", "-o", "json"],
                          env=env, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
