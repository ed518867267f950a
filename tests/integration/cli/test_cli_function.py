"""`warren function|alias|concurrency` via CliRunner against real Redis, and one subprocess run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from warren.cli import cli

Run = Callable[..., Result]


@pytest.fixture
def prefix(redis_url: str, unique: str) -> Iterator[str]:
    prefix = f"test-{unique}"
    yield prefix
    conn = redis.Redis.from_url(redis_url)
    keys = list(conn.scan_iter(f"{prefix}:*"))
    if keys:
        conn.delete(*keys)
    conn.close()


@pytest.fixture
def run(redis_url: str, prefix: str) -> Run:
    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        environ = {"WARREN_REDIS_URL": redis_url, "WARREN_PREFIX": prefix} | (env or {})
        return CliRunner().invoke(cli, list(args), env=environ, auto_envvar_prefix="WARREN")

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    return result


def as_json(result: Result):
    return json.loads(ok(result).stdout)


def one_line_error(result: Result, exit_code: int = 1) -> str:
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines, result.output
    return result.stderr


def test_create_get_list_as_json(run: Run, code: Path):
    created = as_json(
        run(
            "function", "create", "hello", "--code", str(code), "--handler", "app.handler",
            "--memory", "256", "--timeout", "10", "--env", "GREETING=hi", "--env", "EMPTY=",
            "--description", "says hi", "--concurrency", "4", "--max-retries", "1",
            "--max-event-age", "120", "--on-success", "amqp:///done",
            "--on-failure", "redis+stream:///failed", "--output", "json",
        )
    )
    assert created["version"] == "$LATEST"
    assert created["memory_mb"] == 256 and created["timeout_s"] == 10
    assert created["env"] == {"GREETING": "hi", "EMPTY": ""}
    assert created["concurrency"] == 4
    assert created["async_config"] == {
        "max_retries": 1, "max_event_age_s": 120,
        "on_success": "amqp:///done", "on_failure": "redis+stream:///failed",
    }
    assert as_json(run("function", "get", "hello", "--output", "json")) == created
    listed = as_json(run("function", "list", "--output", "json"))
    assert [f["name"] for f in listed] == ["hello"] and listed[0]["concurrency"] == 4


def test_read_commands_default_to_a_table(run: Run, code: Path):
    ok(run("function", "create", "tab", "--code", str(code), "--handler", "app.handler"))
    table = ok(run("function", "list")).stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "RUNTIME", "HANDLER"]
    assert table[1].split()[:3] == ["tab", "python3.11", "app.handler"]
    record = ok(run("function", "get", "tab")).stdout
    assert "memory_mb" in record and "async_config.max_retries" in record


def test_update_publish_and_get_a_version(run: Run, code: Path, tmp_path: Path):
    ok(run("function", "create", "ver", "--code", str(code), "--handler", "app.handler",
           "--env", "A1=1"))
    v1 = as_json(run("function", "publish", "ver", "-o", "json"))
    assert v1["version"] == "1"
    assert v1["arn"].endswith(":function:ver:1")
    zipped = tmp_path / "code.zip"
    subprocess.run(["python3", "-m", "zipfile", "-c", str(zipped), str(code / "app.py")],
                   check=True)
    updated = as_json(run("function", "update", "ver", "--memory", "1024", "--code", str(zipped),
                          "--clear-env", "-o", "json"))
    assert updated["memory_mb"] == 1024 and updated["env"] == {}
    assert updated["code_sha256"] != v1["code_sha256"]
    assert as_json(run("function", "publish", "ver", "-o", "json"))["version"] == "2"
    assert as_json(run("function", "get", "ver:1", "-o", "json"))["memory_mb"] == 128
    versions = as_json(run("function", "versions", "ver", "-o", "json"))
    assert [v["version"] for v in versions] == ["$LATEST", "1", "2"]


def test_alias_with_a_weight(run: Run, code: Path):
    ok(run("function", "create", "al", "--code", str(code), "--handler", "app.handler"))
    ok(run("function", "publish", "al"))
    ok(run("function", "update", "al", "--timeout", "9"))
    ok(run("function", "publish", "al"))
    alias = as_json(run("alias", "create", "al", "live", "--version", "1", "--weight", "2=0.1",
                        "-o", "json"))
    assert alias["version"] == "1" and alias["weights"] == {"2": 0.1}
    assert as_json(run("function", "get", "al:live", "-o", "json"))["version"] == "1"
    moved = as_json(run("alias", "update", "al", "live", "--version", "2", "--no-weight",
                        "-o", "json"))
    assert moved["version"] == "2" and moved["weights"] == {}
    assert [a["name"] for a in as_json(run("alias", "list", "al", "-o", "json"))] == ["live"]
    assert "Deleted alias live" in ok(run("alias", "delete", "al", "live")).stdout
    assert as_json(run("alias", "list", "al", "-o", "json")) == []


def test_concurrency_set_get_clear(run: Run, code: Path):
    ok(run("function", "create", "c", "--code", str(code), "--handler", "app.handler"))
    ok(run("concurrency", "set", "c", "3"))
    got = as_json(run("concurrency", "get", "c", "-o", "json"))
    assert got == {"function": "c", "reserved_concurrency": 3, "provisioned": []}
    summary = as_json(run("concurrency", "get", "-o", "json"))
    assert summary["reservations"] == {"c": 3} and summary["account_limit"] == 1000
    ok(run("concurrency", "clear", "c"))
    assert as_json(run("concurrency", "get", "c", "-o", "json"))["reserved_concurrency"] is None


def test_provision_shows_the_config_and_refuses_bad_usage(run: Run, code: Path):
    ok(run("function", "create", "p", "--code", str(code), "--handler", "app.handler"))
    ok(run("function", "publish", "p"))
    assert run("concurrency", "provision", "p:1").exit_code == 2  # neither N nor --clear
    assert run("concurrency", "provision", "p:1", "2", "--clear").exit_code == 2
    assert "not $LATEST" in one_line_error(run("concurrency", "provision", "p:$LATEST", "1"), 2)
    ok(run("concurrency", "provision", "p:1", "2"))
    got = as_json(run("concurrency", "get", "p:1", "-o", "json"))["provisioned"]
    assert [(c["qualifier"], c["requested"], c["state"]) for c in got] == [("1", 2, "IN_PROGRESS")]
    assert "no live worker" in got[0]["reason"]
    shown = as_json(run("function", "get", "p:1", "-o", "json"))
    assert shown["provisioned"][0]["requested"] == 2
    ok(run("concurrency", "provision", "p:1", "--clear"))
    assert as_json(run("concurrency", "get", "p", "-o", "json"))["provisioned"] == []


def test_account_limit_comes_from_the_environment(run: Run, code: Path):
    ok(run("function", "create", "s", "--code", str(code), "--handler", "app.handler"))
    err = one_line_error(run("concurrency", "set", "s", "6",
                             env={"WARREN_ACCOUNT_CONCURRENCY": "10"}), exit_code=2)
    assert "at most 5 is available" in err


def test_delete(run: Run, code: Path):
    ok(run("function", "create", "d", "--code", str(code), "--handler", "app.handler"))
    assert ok(run("function", "delete", "d")).stdout.strip() == "Deleted function d"
    assert "function d does not exist" in one_line_error(run("function", "get", "d"), 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["function", "get", "ghost"], "function ghost does not exist"),
        (["function", "get", "ghost:live"], "does not exist"),
        (["function", "delete", "ghost"], "function ghost does not exist"),
        (["function", "publish", "ghost"], "function ghost does not exist"),
        (["alias", "list", "ghost"], "function ghost does not exist"),
        (["concurrency", "set", "ghost", "1"], "function ghost does not exist"),
        (["concurrency", "clear", "ghost"], "function ghost does not exist"),
        (["function", "update", "ghost", "--memory", "256"], "function ghost does not exist"),
    ],
)
def test_unknown_things_are_one_line_on_stderr(run: Run, args: list[str], message: str):
    assert message in one_line_error(run(*args), exit_code=3)  # not found


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--memory", "64"], "128-10240"),
        (["--timeout", "1000"], "1-900"),
        (["--env", "AWS_REGION=x"], "reserved"),
        (["--handler", "nohandler"], "module.function"),
        (["--max-retries", "5"], "0-2"),
        (["--on-failure", "http://x"], "amqp:///QUEUE"),
        (["--runtime", "ruby3.2"], "python3.8-python3.14, nodejs18.x"),
        (["--concurrency", "5000"], "at most 900"),
    ],
)
def test_invalid_values_are_one_line_with_a_fix(
    run: Run, code: Path, flags: list[str], message: str
):
    args = ["function", "create", "bad", "--code", str(code), "--handler", "app.handler", *flags]
    assert message in one_line_error(run(*args), exit_code=2)  # a usage error
    assert as_json(run("function", "list", "-o", "json")) == []


@pytest.mark.parametrize(
    "args",
    [
        ["function", "create", "x", "--handler", "app.handler"],  # --code missing
        ["function", "create", "x", "--code", "/nonexistent", "--handler", "app.handler"],
        ["function", "create", "x", "--code", ".", "--handler", "a.b", "--env", "NOEQUALS"],
        ["function", "create", "x", "--code", ".", "--handler", "a.b", "--memory", "big"],
        ["function", "list", "--output", "xml"],
        ["function", "update", "x", "--env", "A1=1", "--clear-env"],
        ["alias", "create", "x", "a", "--version", "1", "--weight", "2:0.1"],
        ["alias", "update", "x", "a", "--weight", "2=0.1", "--no-weight"],
        ["concurrency", "set", "x", "many"],
        ["function", "get", "x:"],
    ],
)
def test_bad_flags_are_usage_errors(run: Run, args: list[str]):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "Error" in result.stderr


def test_unreachable_redis_is_one_clear_line(run: Run):
    result = run("function", "list", env={"WARREN_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in one_line_error(result, 5)


def test_a_bad_redis_url_is_one_clear_line(run: Run):
    result = run("function", "list", env={"WARREN_REDIS_URL": "http://nope"})
    assert "Redis URL must start with redis://" in one_line_error(result, 2)


def test_the_real_command_runs_in_a_subprocess(redis_url: str, prefix: str, code: Path):
    env = os.environ | {"WARREN_REDIS_URL": redis_url, "WARREN_PREFIX": prefix}

    def warren(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "warren", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    created = warren("function", "create", "sub", "--code", str(code), "--handler",
                     "app.handler", "--output", "json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["name"] == "sub"
    missing = warren("function", "get", "nope")
    assert missing.returncode == 3  # not found
    assert missing.stderr.strip() == "Error: function nope does not exist"
    assert missing.stdout == ""


def test_render_a_record_flattens_nested_maps():
    from warren.cli.output import render

    text = render({"name": "f", "async": {"retries": 2, "dest": None}, "env": {}}, "table")
    assert text.splitlines() == [
        "name           f",
        "async.retries  2",
        "async.dest     -",
        "env            -",
    ]


def test_render_rows_as_an_aligned_table_and_json():
    from warren.cli.output import render

    rows = [{"name": "a", "n": 1}, {"name": "longer", "n": None, "extra": [1, 2]}]
    assert render(rows, "table").splitlines() == [
        "NAME    N  EXTRA",
        "a       1  -",
        "longer  -  [1,2]",
    ]
    assert json.loads(render(rows, "json")) == rows
    assert render([], "table") == "(none)"
    assert json.loads(render([], "json")) == []


def test_unsafe_code_is_refused_with_one_line(run: Run, tmp_path: Path):
    import zipfile

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../../escape.py", "x = 1\n")
    args = ["function", "create", "evil", "--code", str(evil), "--handler", "app.handler"]
    assert "zip slip" in one_line_error(run(*args), 6)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "app.py").symlink_to("/etc/hostname")
    args = ["function", "create", "evil", "--code", str(linked), "--handler", "app.handler"]
    assert "symlink" in one_line_error(run(*args), 6)
    assert as_json(run("function", "list", "-o", "json")) == []


def test_ephemeral_storage_and_network_are_function_settings(run: Run, code: Path):
    base = ("--code", str(code), "--handler", "app.handler", "--output", "json")
    plain = as_json(run("function", "create", "plain", *base))
    assert plain["ephemeral_storage_mb"] == 512 and plain["network"] == "default"
    walled = as_json(run("function", "create", "walled", *base, "--ephemeral-storage", "2048",
                         "--network", "none"))
    assert walled["ephemeral_storage_mb"] == 2048 and walled["network"] == "none"
    got = as_json(run("function", "get", "walled", "--output", "json"))
    assert (got["ephemeral_storage_mb"], got["network"]) == (2048, "none")
    updated = as_json(run("function", "update", "walled", "--ephemeral-storage", "10240",
                          "--output", "json"))
    assert updated["ephemeral_storage_mb"] == 10240 and updated["network"] == "none"
    for bad in ("511", "10241"):
        result = run("function", "update", "walled", "--ephemeral-storage", bad)
        message = one_line_error(result, 2)  # a bad value is a usage error
        assert "ephemeral storage" in message
    assert "none" in one_line_error(run("function", "create", "x", *base, "--network", "off"), 2)
