"""`warren local invoke`: result on stdout, logs on stderr, the outcome as JSON, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.sandbox import HANDLERS

from warren.cli import cli

REPO = str(Path(__file__).resolve().parents[3])


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(cli, ["local", "invoke", *args], input=stdin)


def test_prints_the_result_as_json_on_stdout_and_the_logs_on_stderr():
    result = run(HANDLERS, "--handler", "basic.hello", "--payload", '{"name": "cli"}')
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"greeting": "hello cli"}
    assert "START RequestId:" in result.stderr and "hello cli" in result.stderr
    assert "REPORT RequestId:" in result.stderr and "Init Duration:" in result.stderr


def test_output_json_is_the_whole_outcome():
    result = run(HANDLERS, "--handler", "basic.echo", "--payload", "[1, 2]", "--output", "json")
    assert result.exit_code == 0
    outcome = json.loads(result.stdout)
    assert set(outcome) == {"result", "error", "duration_ms", "init_ms", "max_memory_mb", "logs"}
    assert outcome["result"] == [1, 2] and outcome["error"] is None
    assert outcome["init_ms"] > 0 and outcome["max_memory_mb"] > 0
    assert outcome["logs"].startswith("START RequestId:")


def test_payload_from_a_file_and_from_stdin(tmp_path):
    event = tmp_path / "event.json"
    event.write_text('{"from": "file"}')
    from_file = run(HANDLERS, "--handler", "basic.echo", "--payload", f"@{event}")
    assert json.loads(from_file.stdout) == {"from": "file"}
    from_stdin = run(HANDLERS, "--handler", "basic.echo", "--payload", "-", stdin='{"from": 1}')
    assert json.loads(from_stdin.stdout) == {"from": 1}


def test_without_a_payload_the_event_is_an_empty_object():
    assert json.loads(run(HANDLERS, "--handler", "basic.echo").stdout) == {}


def test_memory_timeout_and_env_reach_the_handler():
    result = run(
        HANDLERS, "--handler", "basic.environment", "--memory", "256", "--timeout", "5",
        "--env", "GREETING=hi", "--env", "EMPTY=",
    )
    env = json.loads(result.stdout)
    assert env["GREETING"] == "hi" and env["EMPTY"] == ""
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"


def test_a_failing_handler_exits_non_zero_with_the_error_object():
    result = run(HANDLERS, "--handler", "bad.raises", "--payload", '{"value": 1}')
    assert result.exit_code == 1
    error = json.loads(result.stdout)
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "bad value 1"
    assert "Status: error" in result.stderr


def test_a_timeout_exits_non_zero():
    result = run(HANDLERS, "--handler", "bad.sleeps", "--timeout", "1", "--output", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["errorType"] == "Sandbox.Timedout"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--payload", "{nope"], "not valid JSON"),
        (["--payload", "@/nonexistent/event.json"], "cannot read /nonexistent/event.json"),
        (["--env", "NOEQUALS"], "'NOEQUALS' is not K=V"),
        (["--memory", "64"], "--memory"),
        (["--timeout", "abc"], "--timeout"),
        (["--output", "yaml"], "--output"),
    ],
)
def test_bad_flags_and_unreadable_payloads_get_one_error_line_not_a_traceback(args, message):
    result = run(HANDLERS, "--handler", "basic.echo", *args)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.output


def test_missing_code_dir_and_handler_are_usage_errors():
    assert run("/nonexistent/code", "--handler", "app.h").exit_code == 2
    assert run(HANDLERS).exit_code == 2


def test_the_real_command_runs_in_a_subprocess():
    done = subprocess.run(
        [sys.executable, "-m", "warren.cli", "local", "invoke", HANDLERS, "--handler",
         "basic.hello", "--payload", '{"name": "proc"}'],
        capture_output=True, text=True, cwd=REPO, timeout=60,
        env={"PATH": os.defpath, "PYTHONPATH": REPO,
             "WARREN_SANDBOX_UID_BASE": os.environ["WARREN_SANDBOX_UID_BASE"]},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"greeting": "hello proc"}
    assert "END RequestId:" in done.stderr


def test_runtime_option_runs_a_provided_bootstrap_and_refuses_what_cannot_run_here():
    from support.runtimes import SHELL_ECHO, code_dir

    with code_dir({"bootstrap": SHELL_ECHO}) as path:
        result = run(path, "--handler", "x", "--runtime", "provided.al2023", "--payload", "[7]")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["echo"] == [7]
        refused = run(path, "--handler", "x", "--runtime", "python3.99")
    assert refused.exit_code == 2
    assert "python3.99 cannot run on this machine: it can run" in refused.output


def test_runtime_option_runs_a_node_handler():
    from support.runtimes import code_dir, need_node

    need_node()
    with code_dir({"index.mjs": "export const handler = async (e) => ({ node: e });"}) as path:
        result = run(path, "--handler", "index.handler", "--runtime", "nodejs22.x",
                     "--payload", '{"a": 1}')
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"node": {"a": 1}}
    assert "REPORT RequestId:" in result.stderr
