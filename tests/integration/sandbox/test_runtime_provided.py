"""`provided*` runtimes: the code's own bootstrap loops on the sandbox's Runtime API."""

from __future__ import annotations

import os
import re
import shutil
import threading

import pytest
from support.runtimes import (
    PY_CLIENT,
    PYTHON,
    SHELL_ECHO,
    code_dir,
    requires_awslambdaric,
)
from support.sandbox import requires_root, wait_gone

from sandbox import Sandbox
from warren.errors import InvalidParameter


@pytest.fixture
def shell_echo():
    if shutil.which("curl") is None:  # deploy/ensure-services.sh installs it
        pytest.skip("the shell bootstrap needs curl")
    with code_dir({"bootstrap": SHELL_ECHO}) as path:
        yield path


def test_shell_bootstrap_with_curl_answers_and_stays_warm(shell_echo):
    with Sandbox(shell_echo, "anything.here", runtime="provided.al2023") as sb:
        first = sb.invoke({"a": 1})
        second = sb.invoke({"b": 2}, request_id="rid-2")
    assert first.ok and first.result["echo"] == {"a": 1} and first.result["n"] == 1
    assert first.init_ms is not None and "Init Duration:" in first.logs
    # The same bootstrap process served the second one (its counter went on), without init.
    assert second.result == {"echo": {"b": 2}, "n": 2, "rid": "rid-2"}
    assert second.init_ms is None and "Init Duration" not in second.logs
    assert second.logs.startswith("START RequestId: rid-2 Version: $LATEST\n")
    assert "shell got {\"b\":2}" in second.logs
    assert re.search(r"REPORT RequestId: rid-2\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\t"
                     r"Memory Size: 128 MB\tMax Memory Used: \d+ MB\t\n$", second.logs)


def test_every_provided_name_runs_the_bootstrap(shell_echo):
    for runtime in ("provided", "provided.al2", "provided.al2023"):
        with Sandbox(shell_echo, "x", runtime=runtime) as sb:
            assert sb.invoke({"r": runtime}).result["echo"] == {"r": runtime}


def test_bootstrap_sees_lambdas_environment_and_runs_in_the_code_dir():
    script = PY_CLIENT + """
status, headers, body = call("GET", "invocation/next")
rid = headers["Lambda-Runtime-Aws-Request-Id"]
seen = {k: v for k, v in os.environ.items()}
seen["cwd"] = os.getcwd()
seen["headers"] = {k: v for k, v in headers.items() if k.startswith("Lambda-Runtime")}
call("POST", f"invocation/{rid}/response", json.dumps(seen))
call("GET", "invocation/next")
"""
    with code_dir({"bootstrap": script}) as path, Sandbox(
        path, "my.handler", runtime="provided", env={"COLOUR": "blue"}, function_name="envy",
        timeout_s=30,
    ) as sb:
        out = sb.invoke({})
    env = out.result
    assert env["_HANDLER"] == "my.handler"
    assert env["LAMBDA_TASK_ROOT"] == path and env["cwd"] == path
    assert os.path.isdir(env["LAMBDA_RUNTIME_DIR"])
    assert re.fullmatch(r"127\.0\.0\.1:\d+", env["AWS_LAMBDA_RUNTIME_API"])
    assert env["COLOUR"] == "blue" and env["AWS_LAMBDA_FUNCTION_NAME"] == "envy"
    assert env["PATH"].split(":")[0] == f"{path}/bin"
    assert not any(k.startswith("WARREN_") or k == "PYTEST_CURRENT_TEST" for k in env)
    headers = env["headers"]
    assert headers["Lambda-Runtime-Aws-Request-Id"] == out.request_id
    assert headers["Lambda-Runtime-Invoked-Function-Arn"].endswith(":function:envy")
    assert int(headers["Lambda-Runtime-Deadline-Ms"]) > 0
    assert headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-")


@requires_awslambdaric
def test_awslambdaric_runs_a_python_handler_through_the_runtime_api():
    files = {
        "bootstrap": f"#!/bin/sh\nexec {PYTHON} -m awslambdaric app.handler\n",
        "app.py": (
            "COUNT = {'n': 0}\n"
            "print('init once')\n"
            "def handler(event, context):\n"
            "    COUNT['n'] += 1\n"
            "    if event.get('fail'):\n"
            "        raise KeyError('nope')\n"
            "    return {'got': event, 'n': COUNT['n'], 'rid': context.aws_request_id,\n"
            "            'left': context.get_remaining_time_in_millis() > 0}\n"
        ),
    }
    with code_dir(files) as path, Sandbox(path, "app.handler", runtime="provided.al2023",
                                          timeout_s=30) as sb:
        first = sb.invoke({"x": 1})
        second = sb.invoke({"x": 2})
        failed = sb.invoke({"fail": True})
        after = sb.invoke({"x": 3})
    assert first.result == {"got": {"x": 1}, "n": 1, "rid": first.request_id, "left": True}
    assert "init once" in first.logs and "init once" not in second.logs
    assert second.result["n"] == 2
    assert failed.error_type == "KeyError" and failed.error["errorMessage"] == "'nope'"
    assert "Status: error\tError Type: KeyError" in failed.logs
    assert after.ok and after.result["n"] == 4  # a handler error keeps the sandbox warm


def test_a_runtime_that_posts_an_error_fails_the_invocation_with_its_type():
    script = PY_CLIENT + """
while True:
    status, headers, body = call("GET", "invocation/next")
    rid = headers["Lambda-Runtime-Aws-Request-Id"]
    error = {"errorMessage": "it broke", "errorType": "Custom.Broken", "stackTrace": ["a"]}
    call("POST", f"invocation/{rid}/error", json.dumps(error),
         {"Lambda-Runtime-Function-Error-Type": "Custom.Broken"})
"""
    with code_dir({"bootstrap": script}) as path, Sandbox(path, "h", runtime="provided",
                                                          timeout_s=30) as sb:
        out = sb.invoke({})
        again = sb.invoke({})
    assert not out.ok and out.status == "error" and out.error_type == "Custom.Broken"
    assert out.error == {"errorMessage": "it broke", "errorType": "Custom.Broken",
                         "stackTrace": ["a"]}
    assert "Status: error\tError Type: Custom.Broken" in out.logs
    assert again.error_type == "Custom.Broken" and again.init_ms is None  # still warm


def test_an_error_posted_as_plain_text_is_wrapped_with_the_header_type():
    script = PY_CLIENT + """
status, headers, body = call("GET", "invocation/next")
rid = headers["Lambda-Runtime-Aws-Request-Id"]
call("POST", f"invocation/{rid}/error", "not json", {"Lambda-Runtime-Function-Error-Type": "X.Y"})
call("GET", "invocation/next")
"""
    with code_dir({"bootstrap": script}) as path, Sandbox(path, "h", runtime="provided",
                                                          timeout_s=30) as sb:
        out = sb.invoke({})
    assert out.error == {"errorMessage": "not json", "errorType": "X.Y"}


def test_an_init_error_posted_by_the_runtime_fails_and_resets_the_sandbox():
    script = PY_CLIENT + """
print("initialising", flush=True)
call("POST", "init/error", json.dumps({"errorMessage": "no config", "errorType": "Init.Bad"}),
     {"Lambda-Runtime-Function-Error-Type": "Init.Bad"})
call("GET", "invocation/next")
"""
    with code_dir({"bootstrap": script}) as path, Sandbox(path, "h", runtime="provided",
                                                          timeout_s=30) as sb:
        out = sb.invoke({})
        assert not sb.alive
        again = sb.invoke({})
    assert out.error_type == "Init.Bad" and out.error["errorMessage"] == "no config", out.logs
    assert out.init_ms is not None and "initialising" in out.logs
    assert again.error_type == "Init.Bad" and again.init_ms is not None  # a fresh init


def test_an_init_error_without_a_type_is_runtime_initerror():
    script = PY_CLIENT + """
call("POST", "init/error", "plain words")
call("GET", "invocation/next")
"""
    with code_dir({"bootstrap": script}) as path, Sandbox(path, "h", runtime="provided",
                                                          timeout_s=30) as sb:
        out = sb.invoke({})
    assert out.error == {"errorMessage": "plain words", "errorType": "Runtime.InitError"}


def test_bootstrap_that_exits_at_init_is_an_exit_error_and_a_fresh_one_starts_next_time():
    script = "#!/bin/sh\necho starting\nexit 3\n"
    with code_dir({"bootstrap": script}) as path, Sandbox(path, "h", runtime="provided") as sb:
        out = sb.invoke({})
        assert not sb.alive
        again = sb.invoke({})
    assert out.error_type == "Runtime.ExitError"
    assert out.error["errorMessage"].endswith("Runtime exited with error: exit status 3")
    assert "starting" in out.logs and again.error_type == "Runtime.ExitError"


def test_bootstrap_that_crashes_mid_invocation_is_an_exit_error_then_recovers():
    script = PY_CLIENT + """
status, headers, body = call("GET", "invocation/next")
rid = headers["Lambda-Runtime-Aws-Request-Id"]
if json.loads(body).get("crash"):
    os.kill(os.getpid(), 11)
call("POST", f"invocation/{rid}/response", body)
call("GET", "invocation/next")
"""
    with code_dir({"bootstrap": script}) as path, Sandbox(path, "h", runtime="provided",
                                                          timeout_s=30) as sb:
        crashed = sb.invoke({"crash": True})
        fine = sb.invoke({"crash": False})
    assert crashed.error_type == "Runtime.ExitError"
    assert crashed.error["errorMessage"].endswith("signal: segmentation fault")
    assert crashed.init_ms is not None
    assert fine.ok and fine.result == {"crash": False} and fine.init_ms is not None


def test_missing_or_non_executable_bootstrap_is_an_invalid_entrypoint():
    with code_dir({"app.py": "x = 1\n"}) as path, Sandbox(path, "h", runtime="provided") as sb:
        missing = sb.invoke({})
    assert missing.error_type == "Runtime.InvalidEntrypoint"
    assert "Couldn't find valid bootstrap" in missing.error["errorMessage"]
    with code_dir({"bootstrap": "#!/bin/sh\n"}, executable=()) as path, Sandbox(
        path, "h", runtime="provided"
    ) as sb:
        denied = sb.invoke({})
    assert denied.error_type == "Runtime.InvalidEntrypoint"
    assert "permission denied" in denied.error["errorMessage"].lower()


def test_wrong_ids_double_and_oversized_responses_are_answered_as_lambda_does():
    script = PY_CLIENT + """
seen = {}
status, headers, body = call("GET", "invocation/next")
rid = headers["Lambda-Runtime-Aws-Request-Id"]
seen["early_next"] = None
status, _, reply = call("POST", "invocation/not-the-id/response", "{}")
seen["wrong_id"] = [status, json.loads(reply)["errorType"]]
call("POST", f"invocation/{rid}/response", json.dumps(seen))
# Answered once the next invocation comes (the sandbox serves its API while it invokes).
status, _, reply = call("POST", f"invocation/{rid}/response", "{}")
seen["double"] = [status, json.loads(reply)["errorType"]]
status, headers, body = call("GET", "invocation/next")
rid = headers["Lambda-Runtime-Aws-Request-Id"]
status, _, reply = call("POST", f"invocation/{rid}/response", b"x" * (6 * 1024 * 1024 + 101))
seen["oversized"] = [status, json.loads(reply)["errorType"]]
status, _, reply = call("POST", f"invocation/{rid}/error", "{}")
seen["after_oversized"] = [status, json.loads(reply)["errorType"]]
status, headers, body = call("GET", "invocation/next")
rid = headers["Lambda-Runtime-Aws-Request-Id"]
call("POST", f"invocation/{rid}/response", json.dumps(seen))
call("GET", "invocation/next")
"""
    with code_dir({"bootstrap": script}) as path, Sandbox(path, "h", runtime="provided",
                                                          timeout_s=30) as sb:
        first = sb.invoke({})
        big = sb.invoke({})
        last = sb.invoke({})
    assert first.result["wrong_id"] == [400, "InvalidRequestID"]
    assert big.error_type == "Function.ResponseSizeTooLarge"
    assert big.error["errorMessage"] == (
        "Response payload size (6291557 bytes) exceeded maximum allowed payload size "
        "(6291556 bytes)."
    )
    assert big.init_ms is None  # the runtime lives on, as on Lambda
    assert last.result["double"] == [403, "InvalidStateTransition"]
    assert last.result["oversized"] == [413, "RequestEntityTooLarge"]
    assert last.result["after_oversized"] == [403, "InvalidStateTransition"]


def test_a_chunked_response_is_read_whole():
    script = PY_CLIENT + """
while True:
    status, headers, body = call("GET", "invocation/next")
    rid = headers["Lambda-Runtime-Aws-Request-Id"]
    conn.putrequest("POST", f"/2018-06-01/runtime/invocation/{rid}/response")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for part in (b'{"chunked":', b' [1, 2', b', 3]}'):
        conn.send(b"%x\\r\\n%s\\r\\n" % (len(part), part))
    conn.send(b"0\\r\\n\\r\\n")
    conn.getresponse().read()
"""
    with code_dir({"bootstrap": script}) as path, Sandbox(path, "h", runtime="provided",
                                                          timeout_s=30) as sb:
        assert sb.invoke({}).result == {"chunked": [1, 2, 3]}
        assert sb.invoke({}).result == {"chunked": [1, 2, 3]}


def test_timeout_kills_a_bootstrap_that_ignores_sigterm_and_everything_it_started(shell_echo):
    script = """#!/bin/sh
trap '' TERM
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
curl -sS -o /dev/null "$API/invocation/next"
sleep 300 &
echo "pids $$ $!"
wait
"""
    with code_dir({"bootstrap": script}) as path, Sandbox(path, "h", runtime="provided",
                                                          timeout_s=1) as sb:
        out = sb.invoke({})
        assert not sb.alive
    assert out.status == "timeout" and out.error_type == "Sandbox.Timedout"
    assert out.error["errorMessage"].endswith("Task timed out after 1.00 seconds")
    pids = [int(p) for p in re.search(r"pids (\d+) (\d+)", out.logs).groups()]
    assert wait_gone(pids) == []


def test_concurrent_sandboxes_of_one_function_each_get_their_own_endpoint(shell_echo):
    sandboxes = [Sandbox(shell_echo, "h", runtime="provided.al2023", timeout_s=30)
                 for _ in range(4)]
    results: dict[int, list] = {}

    def run(i: int) -> None:
        results[i] = [sandboxes[i].invoke({"i": i, "k": k}) for k in range(5)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for sb in sandboxes:
            sb.close()
    for i in range(4):
        outs = results[i]
        assert [o.result["echo"] for o in outs] == [{"i": i, "k": k} for k in range(5)]
        assert [o.result["n"] for o in outs] == [1, 2, 3, 4, 5]


@requires_root
def test_a_connection_from_another_uid_gets_nothing_from_the_endpoint():
    script = PY_CLIENT + """
while True:
    status, headers, body = call("GET", "invocation/next")
    rid = headers["Lambda-Runtime-Aws-Request-Id"]
    print("api", os.environ["AWS_LAMBDA_RUNTIME_API"], flush=True)
    call("POST", f"invocation/{rid}/response", body)
"""
    import socket

    with code_dir({"bootstrap": script}) as path, Sandbox(path, "h", runtime="provided",
                                                          timeout_s=30) as sb:
        first = sb.invoke({"n": 1})
        if sb.uid is None:
            pytest.skip("the sandbox has no uid of its own here")
        host, port = re.search(r"api ([\d.]+):(\d+)", first.logs).groups()
        # Given a process of another uid (this test, root) asking for the next event
        intruder = socket.create_connection((host, int(port)), timeout=10)
        intruder.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
        # When the sandbox serves its next invocation
        second = sb.invoke({"n": 2})
        # Then the intruder was cut off and the real runtime got the event
        try:
            assert intruder.recv(1024) == b""
        except ConnectionResetError:
            pass  # closed with its request unread: a reset, as good as an end of stream
        intruder.close()
    assert second.result == {"n": 2}


def test_a_runtime_this_machine_cannot_run_is_refused_with_the_list():
    with code_dir({"bootstrap": "#!/bin/sh\n"}) as path, pytest.raises(
        InvalidParameter, match=r"python3\.99 cannot run .*provided\.al2023"
    ):
        Sandbox(path, "h", runtime="python3.99")


SUPPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "support")
ECHO_C = os.path.join(SUPPORT, "handlers", "runtime", "echo.c")


def test_a_static_binary_bootstrap_runs():
    import subprocess

    if shutil.which("gcc") is None:
        pytest.skip("no gcc here to build the static test runtime (runtime_handlers/echo.c)")
    with code_dir({}) as path:
        built = subprocess.run(
            ["gcc", "-static", "-O2", "-o", os.path.join(path, "bootstrap"), ECHO_C],
            capture_output=True, text=True, check=False,
        )
        if built.returncode != 0:
            pytest.skip(f"cannot link statically here (no static libc?): {built.stderr[-300:]}")
        os.chmod(os.path.join(path, "bootstrap"), 0o755)
        with Sandbox(path, "unused", runtime="provided.al2", timeout_s=30) as sb:
            first = sb.invoke({"a": 1})
            second = sb.invoke([1, 2])
    assert first.result == {"static": {"a": 1}, "n": 1}
    assert second.result == {"static": [1, 2], "n": 2} and second.init_ms is None


def test_a_response_that_is_not_json_is_passed_on_as_it_was_posted():
    script = PY_CLIENT + """
while True:
    status, headers, body = call("GET", "invocation/next")
    rid = headers["Lambda-Runtime-Aws-Request-Id"]
    call("POST", f"invocation/{rid}/response", "plain words, not JSON")
"""
    with code_dir({"bootstrap": script}) as path, Sandbox(path, "h", runtime="provided",
                                                          timeout_s=30) as sb:
        out = sb.invoke({})
    assert out.ok and out.result_json == b"plain words, not JSON"
    assert out.result == "plain words, not JSON"
