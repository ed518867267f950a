"""Invoke through the gateway with boto3 and the aws CLI: the three types and their headers."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.gatewaykit import GatewayKit, unique_name, wait_until

pytestmark = pytest.mark.slow


def test_a_sync_invoke_returns_the_result_version_and_log_tail(gw: GatewayKit) -> None:
    # Given a function created through the gateway
    name = unique_name("echo")
    gw.create(name)
    lam = gw.client()
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    # When it is invoked with a payload and LogType=Tail
    out = lam.invoke(FunctionName=name, Payload=b'{"n": 1}', LogType="Tail")
    # Then the result, the executed version and the last 4 KB of the log come back
    body = json.loads(out["Payload"].read())
    assert out["StatusCode"] == 200
    assert body["event"] == {"n": 1}
    assert out["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in out
    log = base64.b64decode(out["LogResult"]).decode()
    assert log.startswith("START RequestId: ") and "REPORT RequestId" in log
    assert body["request_id"] == out["ResponseMetadata"]["RequestId"]


def test_the_log_tail_is_the_last_4_kb(gw: GatewayKit) -> None:
    name = unique_name("chatty")
    gw.create(name, handler="app.chatty")
    out = gw.client().invoke(FunctionName=name, LogType="Tail")
    log = base64.b64decode(out["LogResult"])
    assert len(log) == 4096
    assert b"line 01999" in log and b"REPORT RequestId" in log


def test_a_function_error_sets_x_amz_function_error(gw: GatewayKit) -> None:
    name = unique_name("fail")
    gw.create(name, handler="app.fail")
    out = gw.client().invoke(FunctionName=name)
    assert out["StatusCode"] == 200
    assert out["FunctionError"] == "Unhandled"
    error = json.loads(out["Payload"].read())
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "always fails"


def test_event_and_dry_run_invocations(gw: GatewayKit) -> None:
    # Given a function whose async results go to a stream
    name = unique_name("async")
    done = f"{gw.fleet.prefix}-done-{name}"
    gw.create(name)
    lam = gw.client()
    lam.put_function_event_invoke_config(
        FunctionName=name,
        DestinationConfig={"OnSuccess": {"Destination": f"redis+stream:///{done}"}},
    )
    # When it is invoked as an Event, then as a DryRun
    event = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"via": "event"}')
    dry = lam.invoke(FunctionName=name, InvocationType="DryRun")
    # Then the Event is accepted (202) and runs; the DryRun only answers 204
    assert event["StatusCode"] == 202
    assert dry["StatusCode"] == 204
    wait_until(lambda: gw.fleet.redis.xlen(done) == 1, what="the async invocation's record")
    record = gw.fleet.stream_records(done)[0]
    assert record["responsePayload"]["event"] == {"via": "event"}
    assert record["requestContext"]["requestId"] == event["ResponseMetadata"]["RequestId"]


def test_qualifiers_name_colon_qualifier_and_arns_pick_the_version(gw: GatewayKit) -> None:
    # Given version 1 behind alias `live`, and $LATEST changed since
    name = unique_name("versions")
    gw.create(name)
    lam = gw.client()
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lam.update_function_configuration(FunctionName=name, Description="changed", Timeout=5)
    lam.publish_version(FunctionName=name)
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    # When each form of qualified name is invoked, then it runs the version it names
    cases = [
        ({"FunctionName": name}, "$LATEST"),
        ({"FunctionName": name, "Qualifier": "1"}, "1"),
        ({"FunctionName": f"{name}:live"}, "1"),
        ({"FunctionName": f"{name}:2"}, "2"),
        ({"FunctionName": f"{arn}:live"}, "1"),
        ({"FunctionName": arn, "Qualifier": "2"}, "2"),
        ({"FunctionName": f"000000000000:function:{name}:1"}, "1"),
    ]
    for args, version in cases:
        out = lam.invoke(**args)
        assert out["ExecutedVersion"] == version, args
        assert json.loads(out["Payload"].read())["version"] == version
    # And a qualifier given twice must agree
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.invoke(FunctionName=f"{name}:1", Qualifier="2")


def test_the_client_context_reaches_the_handler(gw: GatewayKit) -> None:
    # Given a function, and a client context as the mobile SDKs send it
    name = unique_name("ctx")
    gw.create(name)
    lam = gw.client()
    sent = {"client": {"app_title": "shop"}, "custom": {"k": "v"}, "env": {"locale": "en"}}
    header = base64.b64encode(json.dumps(sent).encode()).decode()
    # When it is invoked with X-Amz-Client-Context, then context.client_context carries it
    out = json.loads(lam.invoke(FunctionName=name, ClientContext=header)["Payload"].read())
    assert out["client_context"] == {"custom": {"k": "v"}, "env": {"locale": "en"},
                                     "app_title": "shop"}
    # And without one it is None; a header that is not base64 JSON is refused
    assert json.loads(lam.invoke(FunctionName=name)["Payload"].read())["client_context"] is None
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.invoke(FunctionName=name, ClientContext="not base64 json!")


def test_a_node_handler_gets_the_client_context_too(gw: GatewayKit) -> None:
    import io
    import shutil
    import zipfile

    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    # Given a Node function created through the API
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr(
            "index.mjs",
            "export const handler = async (event, context) => ({custom: "
            "context.clientContext && context.clientContext.custom});\n",
        )
    name = unique_name("node-ctx")
    lam = gw.client()
    lam.create_function(FunctionName=name, Runtime="nodejs20.x", Role="any",
                        Handler="index.handler", Code={"ZipFile": buf.getvalue()})
    # When it is invoked with a client context, then the runtime hands it to the handler
    header = base64.b64encode(json.dumps({"custom": {"shop": "tea"}}, indent=2).encode()).decode()
    out = lam.invoke(FunctionName=name, ClientContext=header)
    assert "FunctionError" not in out, out["Payload"].read()
    assert json.loads(out["Payload"].read()) == {"custom": {"shop": "tea"}}


def test_the_aws_cli_invokes_through_the_gateway(gw: GatewayKit, tmp_path: Path) -> None:
    # Given a function and the aws CLI configured with a Warren key
    name = unique_name("cli")
    gw.create(name)
    key_id, secret = gw.new_key()
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    aws = [sys.executable, "-m", "awscli"]
    out_file = tmp_path / "out.json"
    # When `aws lambda invoke --endpoint-url` calls it
    done = subprocess.run(
        [*aws, "lambda", "invoke", "--endpoint-url", gw.endpoint, "--function-name", name,
         "--payload", '{"from": "cli"}', "--log-type", "Tail", str(out_file)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    # Then it exits 0 with the status and the log, and writes the result
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)
    assert meta["StatusCode"] == 200 and meta["ExecutedVersion"] == "$LATEST"
    assert "START RequestId" in base64.b64decode(meta["LogResult"]).decode()
    assert json.loads(out_file.read_text())["event"] == {"from": "cli"}
    # And the CLI's management commands work too
    listed = subprocess.run(
        [*aws, "lambda", "get-function-configuration", "--endpoint-url", gw.endpoint,
         "--function-name", name],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["FunctionName"] == name
