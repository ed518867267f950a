"""`warren invoke`, `logs` and `status` through the real CLI against a real fleet."""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from support.fleet import Fleet

from warren.client import Client
from warren.errors import TooManyRequests


@pytest.fixture
def echo_fleet(fleet: Fleet) -> Fleet:
    fleet.function("echo", handler="app.echo")
    fleet.function("boom", handler="app.fail")
    fleet.worker(slots=2)
    return fleet


def test_sync_invoke_prints_the_result_and_exits_0(echo_fleet: Fleet) -> None:
    out = echo_fleet.cli("invoke", "echo", "--payload", '{"a": 1}')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"event": {"a": 1}, "version": "$LATEST"}


def test_payload_from_file_and_stdin(echo_fleet: Fleet, tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text('{"from": "file"}')
    out = echo_fleet.cli("invoke", "echo", "--payload", f"@{event}")
    assert json.loads(out.stdout)["event"] == {"from": "file"}
    out = echo_fleet.cli("invoke", "echo", "--payload", "-", input=b'{"from": "stdin"}')
    assert json.loads(out.stdout)["event"] == {"from": "stdin"}


def test_function_error_prints_the_error_object_and_exits_1(echo_fleet: Fleet) -> None:
    out = echo_fleet.cli("invoke", "boom", "--payload", "{}")
    assert out.returncode == 1
    error = json.loads(out.stdout)
    assert error["errorType"] == "ValueError"
    assert "always fails" in error["errorMessage"]


def test_output_json_has_lambda_fields_and_log_tail(echo_fleet: Fleet) -> None:
    out = echo_fleet.cli("invoke", "echo", "--payload", "{}", "--log-tail", "--output", "json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert set(body) == {
        "status_code",
        "executed_version",
        "function_error",
        "payload",
        "log_result",
    }
    assert body["status_code"] == 200 and body["executed_version"] == "$LATEST"
    assert body["function_error"] is None
    log = base64.b64decode(body["log_result"]).decode()
    assert log.startswith("START RequestId:") and "REPORT RequestId:" in log
    assert "echo {}" in log


def test_log_tail_is_printed_to_stderr_and_is_the_last_4kb(echo_fleet: Fleet) -> None:
    out = echo_fleet.cli(
        "invoke", "echo", "--payload", json.dumps({"pad": "x" * 6000}), "--log-tail"
    )
    assert out.returncode == 0
    assert b"REPORT RequestId:" in out.stderr
    result = echo_fleet.client.invoke("echo", {"pad": "y" * 6000}, log_tail=True)
    assert len(base64.b64decode(result.log_result)) == 4096
    assert "REPORT RequestId:" in result.logs


def test_async_invoke_returns_202_and_dry_run_204(echo_fleet: Fleet) -> None:
    out = echo_fleet.cli("invoke", "echo", "--async", "--output", "json")
    assert json.loads(out.stdout)["status_code"] == 202
    out = echo_fleet.cli("invoke", "echo", "--dry-run", "--output", "json")
    assert out.returncode == 0
    assert json.loads(out.stdout)["status_code"] == 204


def test_unknown_function_is_one_clear_line(echo_fleet: Fleet) -> None:
    out = echo_fleet.cli("invoke", "nope")
    assert out.returncode != 0
    lines = out.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and "nope" in lines[0]


def test_unreachable_broker_is_one_clear_line(echo_fleet: Fleet) -> None:
    # (an async invoke: a sync one travels on Redis and needs no broker)
    out = echo_fleet.cli("--amqp-url", "amqp://guest:secret@127.0.0.1:1/%2F", "invoke", "echo",
                         "--async")
    assert out.returncode != 0
    lines = out.stderr.decode().strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1" in lines[0]
    assert "secret" not in lines[0]


def test_bad_payload_is_one_clear_line(echo_fleet: Fleet) -> None:
    out = echo_fleet.cli("invoke", "echo", "--payload", "{not json")
    assert out.returncode != 0
    assert b"not valid JSON" in out.stderr and b"Traceback" not in out.stderr


def test_sync_over_the_limit_fails_at_once_with_429(fleet: Fleet) -> None:
    fleet.function("one", handler="app.span", timeout_s=10, concurrency=1)
    fleet.worker(slots=2)
    holder = Client.from_settings(fleet.settings)
    thread = threading.Thread(target=holder.invoke, args=("one", {"sleep": 3}))
    thread.start()
    try:
        fleet.wait_for(
            lambda: fleet.redis.zcard(f"{fleet.prefix}:sem:fn:one") == 1,
            what="the first call holding the only slot",
        )
        with pytest.raises(TooManyRequests) as caught:
            fleet.client.invoke("one", {"sleep": 0})
        assert caught.value.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"
        out = fleet.cli("invoke", "one", "--payload", "{}")
        assert out.returncode == 4  # throttled
        assert b"TooManyRequestsException" in out.stderr and b"Traceback" not in out.stderr
    finally:
        thread.join()
        holder.close()
    # And once the slot is back, calls go through again
    fleet.wait_for(lambda: fleet.redis.zcard(f"{fleet.prefix}:sem:fn:one") == 0, what="release")
    assert fleet.client.invoke("one", {"sleep": 0}).status_code == 200


def test_status_json_lists_the_worker_queues_and_functions(echo_fleet: Fleet) -> None:
    echo_fleet.client.invoke("echo", {})
    out = echo_fleet.cli("status", "--output", "json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    (worker,) = status["workers"]
    assert worker["slots"] == 2 and worker["host"] and worker["last_heartbeat"] > 0
    assert "provided.al2023" in worker["runtimes"]  # what this worker can run, advertised
    names = {q["name"] for q in status["queues"]}
    assert echo_fleet.keys.work_queue() in names
    echo = next(f for f in status["functions"] if f["name"] == "echo")
    assert echo["invocations"] >= 1 and echo["in_flight"] == 0
    table = echo_fleet.cli("status")
    assert table.returncode == 0 and b"WORKERS" in table.stdout


def test_logs_since_shows_recent_invocations_only(echo_fleet: Fleet) -> None:
    first = echo_fleet.client.invoke("echo", {"marker": 1})
    time.sleep(3)
    second = echo_fleet.client.invoke("echo", {"marker": 2})
    out = echo_fleet.cli("logs", "echo", "--since", "10m")
    assert out.returncode == 0
    text = out.stdout.decode()
    assert f"START RequestId: {first.request_id}" in text
    assert f"START RequestId: {second.request_id}" in text and "REPORT RequestId" in text
    recent = echo_fleet.cli("logs", "echo", "--since", "2s").stdout.decode()
    assert second.request_id in recent and first.request_id not in recent
    assert echo_fleet.cli("logs", "echo", "--since", "ten").returncode != 0
    assert echo_fleet.cli("logs", "nope").returncode != 0


def test_unreachable_redis_is_one_clear_line(echo_fleet: Fleet) -> None:
    out = echo_fleet.cli("--redis-url", "redis://127.0.0.1:1/0", "invoke", "echo")
    assert out.returncode != 0
    lines = out.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "Redis" in lines[0], out.stderr


def test_a_timed_out_run_is_a_function_error_and_the_next_run_is_fine(fleet: Fleet) -> None:
    fleet.function("sleepy", handler="app.span", timeout_s=1)
    fleet.worker(slots=1)
    result = fleet.client.invoke("sleepy", {"sleep": 3})
    assert result.function_error == "Unhandled"
    assert result.payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in result.payload["errorMessage"]
    assert fleet.client.invoke("sleepy", {"sleep": 0}).function_error is None


def test_a_crashed_runtime_is_an_exit_error_and_the_next_run_gets_a_fresh_one(
    fleet: Fleet,
) -> None:
    fleet.function("fragile", handler="app.maybe_die")
    fleet.worker(slots=1)
    first = fleet.client.invoke("fragile", {}).payload["pid"]
    result = fleet.client.invoke("fragile", {"die": True})
    assert result.function_error == "Unhandled"
    assert result.payload["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in result.payload["errorMessage"]
    again = fleet.client.invoke("fragile", {})
    assert again.function_error is None and again.payload["pid"] != first


def test_a_warm_sandbox_killed_while_idle_is_replaced_on_the_next_call(fleet: Fleet) -> None:
    fleet.function("victim", handler="app.maybe_die")
    fleet.worker(slots=1)
    pid = fleet.client.invoke("victim", {}).payload["pid"]
    os.kill(pid, signal.SIGKILL)  # e.g. the OOM killer, between two calls
    time.sleep(0.2)
    result = fleet.client.invoke("victim", {})
    assert result.function_error is None, result.payload
    assert result.payload["pid"] != pid
