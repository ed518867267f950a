"""The sandbox keeps Lambda's handler contract: context, environment, init once, logs, errors."""

from __future__ import annotations

import os
import re

import pytest
from support.sandbox import HANDLERS, IS_ROOT, code_dir

from sandbox import Outcome, Sandbox
from warren.errors import InvalidParameter, SandboxError


@pytest.fixture
def sandbox_factory():
    opened: list[Sandbox] = []

    def make(handler: str, code: str = HANDLERS, **kwargs) -> Sandbox:
        sb = Sandbox(code, handler=handler, **kwargs)
        opened.append(sb)
        return sb

    yield make
    for sb in opened:
        sb.close()


# -- results and the context object ----------------------------------------------------------


def test_handler_result_comes_back_decoded_and_as_the_handlers_json(sandbox_factory):
    out = sandbox_factory("basic.hello").invoke({"name": "you"})
    assert isinstance(out, Outcome)
    assert out.ok and out.status == "success" and out.error is None and out.error_type is None
    assert out.result == {"greeting": "hello you"}
    assert out.result_json == b'{"greeting": "hello you"}'
    assert out.duration_ms > 0 and out.billed_duration_ms >= 1
    assert out.billed_duration_ms >= out.duration_ms


def test_payload_bytes_are_passed_through_and_request_id_is_kept(sandbox_factory):
    sb = sandbox_factory("basic.describe")
    out = sb.invoke(payload=b'{"k": [1, 2]}', request_id="req-123")
    assert out.request_id == "req-123"
    assert out.result["aws_request_id"] == "req-123"
    echo = sandbox_factory("basic.echo").invoke(payload=b'{"k": [1, 2]}')
    assert echo.result == {"k": [1, 2]}


def test_context_has_lambdas_attributes(sandbox_factory):
    sb = sandbox_factory(
        "basic.describe", memory_mb=256, timeout_s=7, function_name="hello", function_version="3"
    )
    ctx = sb.invoke({}).result
    assert ctx["function_name"] == "hello"
    assert ctx["function_version"] == "3"
    assert ctx["invoked_function_arn"] == "arn:aws:lambda:us-east-1:000000000000:function:hello"
    assert ctx["memory_limit_in_mb"] == "256"  # a string, as awslambdaric gives it
    assert ctx["log_group_name"] == "/aws/lambda/hello"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[3\][0-9a-f]{32}", ctx["log_stream_name"])
    assert 6000 < ctx["remaining_ms"] <= 7000
    assert ctx["cwd"] == HANDLERS


def test_explicit_arn_is_used(sandbox_factory):
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:f:live"
    sb = sandbox_factory("basic.describe", invoked_function_arn=arn)
    assert sb.invoke({}).result["invoked_function_arn"] == arn


def test_remaining_time_counts_down_during_the_invocation(sandbox_factory):
    out = sandbox_factory("basic.remaining", timeout_s=3).invoke({"sleep": 0.5})
    assert 1500 < out.result <= 2500


def test_environment_is_the_functions_plus_lambdas_reserved_names_and_nothing_else(
    sandbox_factory, monkeypatch
):
    monkeypatch.setenv("WARREN_SECRET_OF_THE_CALLER", "s3cret")
    env = {"GREETING": "hi", "AWS_LAMBDA_FUNCTION_NAME": "spoofed", "TZ": "Europe/Paris"}
    sb = sandbox_factory("basic.environment", env=env, function_name="fn", memory_mb=512)
    seen = sb.invoke({}).result
    assert seen["GREETING"] == "hi"
    assert seen["TZ"] == "Europe/Paris"  # an unreserved default: the function may change it
    assert seen["AWS_LAMBDA_FUNCTION_NAME"] == "fn"  # reserved: the function may not
    assert seen["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert seen["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert seen["LAMBDA_TASK_ROOT"] == HANDLERS
    assert seen["_HANDLER"] == "basic.environment"
    assert seen["AWS_REGION"] == "us-east-1"
    assert seen["AWS_EXECUTION_ENV"].startswith("AWS_Lambda_python3")
    assert seen["TMPDIR"] == ("/tmp" if sb.enforcement.view == "private" else sb.tmp_dir)
    assert "WARREN_SECRET_OF_THE_CALLER" not in seen
    reserved = {
        "_HANDLER", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR", "TMPDIR",
    }
    assert set(seen) == reserved | {"GREETING", "TZ", "PATH", "LANG", "PYTHONPATH"}
    assert "s3cret" not in repr(seen)


# -- init once, warm reuse ----------------------------------------------------------------------


def test_module_code_runs_once_and_the_same_child_serves_later_invocations(sandbox_factory):
    sb = sandbox_factory("basic.describe")
    first, second, third = (sb.invoke({}) for _ in range(3))
    assert first.init_ms is not None and first.init_ms > 0
    assert second.init_ms is None and third.init_ms is None
    assert first.result["pid"] == second.result["pid"] == third.result["pid"]
    assert third.result["init_count"] == 1
    assert "Init Duration:" in first.logs and "Init Duration:" not in second.logs


def test_init_output_is_part_of_the_first_invocations_logs(sandbox_factory):
    sb = sandbox_factory("basic.noop")
    assert "init ran" in sb.invoke({}).logs
    assert "init ran" not in sb.invoke({}).logs


def test_start_prewarms_and_first_invoke_still_reports_init(sandbox_factory):
    sb = sandbox_factory("basic.noop")
    sb.start()
    assert sb.alive
    out = sb.invoke({})
    assert out.ok and out.init_ms is not None


# -- logs ------------------------------------------------------------------------------------------


def test_logs_are_framed_as_lambda_writes_them(sandbox_factory):
    sb = sandbox_factory("basic.logs", memory_mb=256)
    sb.invoke({})
    out = sb.invoke({}, request_id="abc")
    lines = out.logs.splitlines()
    assert lines[0] == "START RequestId: abc Version: $LATEST"
    assert "to stdout" in lines and "to stderr" in lines
    warning = [line for line in lines if line.startswith("[WARNING]")]
    assert len(warning) == 1 and warning[0].split("\t")[2:] == ["abc", "a warning"]
    assert lines[-2] == "END RequestId: abc"
    report = lines[-1].split("\t")
    assert report[0] == "REPORT RequestId: abc"
    assert re.fullmatch(r"Duration: \d+\.\d\d ms", report[1])
    assert re.fullmatch(r"Billed Duration: \d+ ms", report[2])
    assert report[3] == "Memory Size: 256 MB"
    assert report[4] == f"Max Memory Used: {out.max_memory_mb} MB"
    assert not any(part.startswith("Status") for part in report)


def test_each_invocation_gets_only_its_own_output(sandbox_factory):
    sb = sandbox_factory("basic.hello")
    first = sb.invoke({"name": "one"})
    second = sb.invoke({"name": "two"})
    assert "hello one" in first.logs and "hello two" not in first.logs
    assert "hello two" in second.logs and "hello one" not in second.logs


def test_max_memory_is_measured_not_the_limit(sandbox_factory):
    small = sandbox_factory("basic.noop", memory_mb=512).invoke({})
    assert 3 <= small.max_memory_mb < 100
    big = sandbox_factory("bad.allocates", memory_mb=512).invoke({"mb": 150})
    assert big.ok and big.result == 150
    assert 150 <= big.max_memory_mb < 512


# -- errors, shaped as Lambda shapes them -------------------------------------------------


def test_handler_exception_is_an_outcome_with_type_message_and_trimmed_trace(sandbox_factory):
    out = sandbox_factory("bad.raises").invoke({"value": 7}, request_id="r1")
    assert not out.ok and out.status == "error" and out.result is None
    assert out.error_type == "ValueError"
    assert out.error["errorType"] == "ValueError"
    assert out.error["errorMessage"] == "bad value 7"
    trace = out.error["stackTrace"]
    assert len(trace) == 2
    assert "bad.py" in trace[0] and "in raises" in trace[0]
    assert "in _inner" in trace[1]
    assert not any("sandbox/runtime.py" in frame for frame in trace)
    assert "[ERROR] ValueError: bad value 7" in out.logs
    assert "Status: error\tError Type: ValueError" in out.logs
    assert out.result_json.startswith(b"{") and b"ValueError" in out.result_json


def test_the_sandbox_survives_a_handler_exception(sandbox_factory):
    sb = sandbox_factory("bad.raises")
    first = sb.invoke({})
    pid = sb.pid
    assert not first.ok and sb.alive
    sb.invoke({})
    assert sb.pid == pid


@pytest.mark.parametrize(
    ("handler", "event", "error_type", "message"),
    [
        ("bad.unserialisable", {}, "Runtime.MarshalError", "Unable to marshal response: "),
        ("bad.huge_result", {"mb": 7}, "Function.ResponseSizeTooLarge", "exceeded maximum"),
    ],
)
def test_results_lambda_cannot_return(sandbox_factory, handler, event, error_type, message):
    out = sandbox_factory(handler, memory_mb=256).invoke(event)
    assert out.status == "error" and out.error_type == error_type
    assert message in out.error["errorMessage"]


def test_a_result_just_under_six_megabytes_is_returned(sandbox_factory):
    out = sandbox_factory("basic.echo", memory_mb=256).invoke("x" * (6 * 1024 * 1024 - 10))
    assert out.ok and len(out.result) == 6 * 1024 * 1024 - 10


@pytest.mark.parametrize(
    ("files", "handler", "error_type", "message"),
    [
        ({"app.py": "def h(e, c): return 1\n"}, "nodots", "Runtime.MalformedHandlerName",
         "Bad handler 'nodots'"),
        ({"app.py": "def h(e, c): return 1\n"}, "missing.h", "Runtime.ImportModuleError",
         "Unable to import module 'missing': No module named 'missing'"),
        ({"app.py": "import not_installed_anywhere\n"}, "app.h", "Runtime.ImportModuleError",
         "No module named 'not_installed_anywhere'"),
        ({"app.py": "def h(e, c)\n    return 1\n"}, "app.h", "Runtime.UserCodeSyntaxError",
         "Syntax error in module 'app'"),
        ({"app.py": "def h(e, c): return 1\n"}, "app.nope", "Runtime.HandlerNotFound",
         "Handler 'nope' missing on module 'app'"),
        ({"app.py": "raise RuntimeError('broken at init')\n"}, "app.h", "RuntimeError",
         "broken at init"),
    ],
)
def test_init_failures_are_reported_and_the_sandbox_is_reset(files, handler, error_type, message):
    with code_dir(files) as path, Sandbox(path, handler=handler) as sb:
        out = sb.invoke({})
        assert out.status == "error" and out.error_type == error_type
        assert message in out.error["errorMessage"]
        assert f"Error Type: {error_type}" in out.logs
        assert not sb.alive
        again = sb.invoke({})  # a fresh sandbox tries the init again
        assert again.error_type == error_type and again.init_ms is not None


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        ("bad.exits", "exit status 3"),
        ("bad.sys_exit", "exit status 4"),
        ("bad.kills_itself", "signal: killed"),
        ("bad.segfault", "signal: segmentation fault"),
    ],
)
def test_a_dying_child_is_an_exit_error_and_the_next_invoke_gets_a_fresh_one(
    sandbox_factory, handler, reason
):
    sb = sandbox_factory(handler)
    sb.start()
    pid = sb.pid
    out = sb.invoke({}, request_id="dies")
    assert out.status == "error" and out.error_type == "Runtime.ExitError"
    expected = f"RequestId: dies Error: Runtime exited with error: {reason}"
    assert out.error["errorMessage"] == expected
    assert "Status: error\tError Type: Runtime.ExitError" in out.logs
    assert not sb.alive
    if handler == "bad.exits":
        assert "about to exit" in out.logs
    again = sb.invoke({})
    assert again.error_type == "Runtime.ExitError" and again.init_ms is not None
    assert sb.pid is None or sb.pid != pid


def test_a_child_that_dies_during_init_is_an_exit_error_with_its_first_request_unread():
    # A cold start's request goes to the child before its init is done: dying in init leaves
    # it unread, and the caller must see an exit (not a reset connection).
    with code_dir({"app.py": "import os\nos._exit(3)\n"}) as path, Sandbox(path, "app.h") as sb:
        out = sb.invoke({}, request_id="dies-in-init")
        assert out.status == "error" and out.error_type == "Runtime.ExitError"
        assert out.error["errorMessage"].endswith("Runtime exited with error: exit status 3")
        assert not sb.alive


def test_init_time_does_not_eat_into_the_first_invocations_timeout():
    # The first request is sent along with the spec; its timeout counts from when the child
    # reads it, after init, as Lambda's does.
    files = {"app.py": "import time\ntime.sleep(1.2)\n\n"
                       "def h(event, context):\n"
                       "    return context.get_remaining_time_in_millis()\n"}
    with code_dir(files) as path, Sandbox(path, "app.h", timeout_s=1) as sb:
        out = sb.invoke({})
        assert out.ok, out.error
        assert out.init_ms is not None and out.init_ms >= 1200
        assert 900 <= out.result <= 1000


def test_a_crash_does_not_touch_a_warm_sibling_sandbox(sandbox_factory):
    healthy = sandbox_factory("basic.describe")
    pid = healthy.invoke({}).result["pid"]
    sandbox_factory("bad.segfault").invoke({})
    assert healthy.invoke({}).result["pid"] == pid


def test_invalid_json_payload_is_an_unmarshal_error(sandbox_factory):
    out = sandbox_factory("basic.echo").invoke(payload=b"{not json")
    assert out.error_type == "Runtime.UnmarshalError"


# -- the object itself --------------------------------------------------------------------


def test_closed_sandbox_refuses_to_invoke_and_close_is_idempotent():
    sb = Sandbox(HANDLERS, handler="basic.noop")
    sb.invoke({})
    sb.close()
    sb.close()
    with pytest.raises(SandboxError):
        sb.invoke({})


@pytest.mark.parametrize(
    "kwargs", [{"memory_mb": 0}, {"memory_mb": "128"}, {"timeout_s": 0}, {"timeout_s": -1}]
)
def test_bad_limits_are_refused(kwargs):
    with pytest.raises(InvalidParameter):
        Sandbox(HANDLERS, handler="basic.noop", **kwargs)


def test_missing_code_dir_is_refused():
    with pytest.raises(InvalidParameter):
        Sandbox("/nonexistent/code", handler="app.handler")


@pytest.mark.skipif(not IS_ROOT, reason="needs root: only then do handlers run as another uid")
def test_unreadable_code_dir_is_an_import_error_that_says_why():
    with code_dir({"app.py": "def h(e, c): return 1\n"}) as path:
        os.chmod(path, 0o700)
        with Sandbox(path, handler="app.h") as sb:
            out = sb.invoke({})
    assert out.error_type == "Runtime.ImportModuleError"
    assert "not readable by the sandbox user" in out.error["errorMessage"]


def test_an_event_that_is_not_json_is_refused_before_anything_runs(sandbox_factory):
    with pytest.raises(InvalidParameter, match="not JSON-serialisable"):
        sandbox_factory("basic.echo").invoke({"a set": {1}})


def test_a_handler_gets_its_own_bundled_modules_not_the_callers():
    files = {
        "app.py": "import msgpack, orjson, sandbox\n\n"
        "def h(e, c):\n    return [msgpack.WHO, orjson.WHO, sandbox.WHO]\n",
        "msgpack.py": "WHO = 'bundled msgpack'\n",
        "orjson.py": "WHO = 'bundled orjson'\n",
        "sandbox.py": "WHO = 'bundled sandbox'\n",
    }
    with code_dir(files) as path, Sandbox(path, handler="app.h") as sb:
        out = sb.invoke({})
    assert out.result == ["bundled msgpack", "bundled orjson", "bundled sandbox"]
