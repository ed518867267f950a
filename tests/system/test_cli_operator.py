"""The CLI operators expect: exit codes, -o everywhere, logs as JSON lines, no-worker fail-fast."""

from __future__ import annotations

import json

import pytest
from support.fleet import Fleet

pytestmark = pytest.mark.slow


def test_sync_call_without_a_live_worker_fails_in_seconds_saying_so(fleet: Fleet) -> None:
    # Given a function with a long timeout and no worker for its pool
    fleet.function("lonely", timeout_s=60, pool="nobody")
    # When it is invoked synchronously (the harness gives the CLI 30 s, not the 90 s wait)
    out = fleet.cli("invoke", "lonely", "--payload", "{}", timeout=30)
    # Then it exits "fleet unavailable" and names the pool and the command to run
    assert out.returncode == 5, out.stderr
    assert b"no live worker serves pool 'nobody'" in out.stderr
    assert b"warren worker --pool nobody" in out.stderr


def test_exit_codes_not_found_and_usage(fleet: Fleet) -> None:
    assert fleet.cli("invoke", "missing-fn").returncode == 3
    assert fleet.cli("function", "get", "missing-fn", "-o", "json").returncode == 3
    assert fleet.cli("status", "--output", "xml").returncode == 2
    helped = fleet.cli("--help")
    assert b"Exit codes: 0 ok; 1 function error" in helped.stdout


def test_logs_as_lambda_json_lines_and_read_commands_in_yaml(fleet: Fleet) -> None:
    fleet.function("talker", handler="app.echo")
    fleet.worker(slots=1)
    result = fleet.client.invoke("talker", {"hello": 1})
    out = fleet.cli("logs", "talker", "-o", "json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.decode().splitlines()]
    kinds = [line.get("type", line.get("level")) for line in lines]
    assert kinds[0] == "platform.start" and kinds[-1] == "platform.report"
    app = next(line for line in lines if line.get("level") == "INFO")
    assert app["requestId"] == result.request_id and "echo" in app["message"]
    report = lines[-1]["record"]
    assert report["requestId"] == result.request_id and report["status"] == "success"
    assert report["metrics"]["billedDurationMs"] >= 1 and "initDurationMs" in report["metrics"]
    # and every read command speaks yaml too
    got = fleet.cli("function", "get", "talker", "-o", "yaml")
    assert got.returncode == 0 and b"name: talker" in got.stdout
    status = fleet.cli("status", "-o", "yaml")
    assert status.returncode == 0 and b"workers:" in status.stdout


def test_worker_can_also_print_logs_as_json_lines(fleet: Fleet) -> None:
    fleet.function("shipped", handler="app.echo")
    worker = fleet.worker(slots=1, env=None)
    worker.terminate()
    worker.wait()
    proc = fleet.spawn(
        "worker", "--slots", "1", "--cache-dir", str(fleet.cache_dir), "--log-stdout"
    )
    fleet.wait_for(lambda: len(fleet.workers()) >= 1, what="the logging worker")
    rid = fleet.client.invoke("shipped", {"x": 2}).request_id
    fleet.stop(proc)
    output = "\n".join(
        p.read_text() for p in sorted(fleet.logdir.glob("worker-*.log"))
    )
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(r.get("type") == "platform.report" and r["record"]["requestId"] == rid
               for r in records)


def test_shell_completion_offers_function_names_and_mapping_ids(fleet: Fleet) -> None:
    import os
    import subprocess
    import sys

    fleet.function("alpha-fn")
    fleet.redis.sadd(fleet.keys.mappings, "1234-abcd")

    def complete(words: str, cword: int) -> list[str]:
        env = {**fleet.env, "_WARREN_COMPLETE": "bash_complete", "COMP_WORDS": words,
               "COMP_CWORD": str(cword)}
        done = subprocess.run([sys.executable, "-c", "from warren.cli import main; main()"],
                              env=env, capture_output=True, text=True, check=False,
                              cwd=os.getcwd())
        return [line.split(",", 1)[1] for line in done.stdout.splitlines()]

    assert complete("warren invoke alp", 2) == ["alpha-fn"]
    assert complete("warren logs ", 2) == ["alpha-fn"]
    assert complete("warren mapping get 12", 3) == ["1234-abcd"]
