"""Errors in the shapes botocore maps to its exception classes, and limits enforced early."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from botocore.exceptions import ClientError
from support.gatewaykit import GatewayKit, fetch, unique_name

pytestmark = pytest.mark.slow

MB = 1024 * 1024


def test_an_unknown_function_is_resource_not_found(gw: GatewayKit) -> None:
    lam = gw.client()
    for call in (
        lambda: lam.invoke(FunctionName="no-such-function"),
        lambda: lam.get_function(FunctionName="no-such-function"),
        lambda: lam.delete_function(FunctionName="no-such-function"),
    ):
        with pytest.raises(lam.exceptions.ResourceNotFoundException) as info:
            call()
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_creating_a_function_twice_is_a_conflict(gw: GatewayKit) -> None:
    name = unique_name("twice")
    gw.create(name)
    with pytest.raises(gw.client().exceptions.ResourceConflictException) as info:
        gw.create(name)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409


def test_bad_values_are_invalid_parameter_values(gw: GatewayKit) -> None:
    lam = gw.client()
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        gw.create(unique_name("mem"), MemorySize=12000)  # Warren allows 128-10240
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.create_function(FunctionName=unique_name("s3"), Runtime="python3.11", Role="r",
                            Handler="app.echo", Code={"S3Bucket": "bucket", "S3Key": "k.zip"})


def test_a_payload_that_is_not_json_is_invalid_request_content(gw: GatewayKit) -> None:
    name = unique_name("json")
    gw.create(name)
    lam = gw.client()
    with pytest.raises(lam.exceptions.InvalidRequestContentException) as info:
        lam.invoke(FunctionName=name, Payload=b"{not json")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_a_management_body_that_is_not_json_is_invalid_request_content(gw: GatewayKit) -> None:
    lam = gw.client()

    def garble(request: object, **_: object) -> None:
        request.data = b"{this is not json"  # type: ignore[attr-defined]

    lam.meta.events.register("request-created.lambda.CreateAlias", garble)
    with pytest.raises(lam.exceptions.InvalidRequestContentException):
        lam.create_alias(FunctionName="any", Name="a", FunctionVersion="1")


def test_payloads_over_the_limits_are_request_too_large(gw: GatewayKit) -> None:
    name = unique_name("big")
    gw.create(name)
    lam = gw.client()
    # A sync payload over 6 MB, an async one over 1 MB (each one fine as the other type)
    big_sync = b'"' + b"x" * (6 * MB) + b'"'
    big_async = b'"' + b"x" * (MB + 10) + b'"'
    for payload, kind in ((big_sync, "RequestResponse"), (big_async, "Event")):
        with pytest.raises(lam.exceptions.RequestTooLargeException) as info:
            lam.invoke(FunctionName=name, Payload=payload, InvocationType=kind)
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert lam.invoke(FunctionName=name, Payload=big_async)["StatusCode"] == 200


def test_an_oversized_body_is_refused_before_it_is_sent(gw: GatewayKit) -> None:
    # Given a request that announces 7 MB but sends nothing of its body
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(
            b"POST /2015-03-31/functions/x/invocations HTTP/1.1\r\nHost: gw\r\n"
            + f"Content-Length: {7 * MB}\r\n\r\n".encode()
        )
        # Then the 413 comes at once, without waiting for (or buffering) the body
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"RequestTooLargeException" in reply


def test_over_the_concurrency_limit_is_too_many_requests_with_retry_after(gw: GatewayKit) -> None:
    # Given a function with reserved concurrency 0 (Lambda's way to turn one off)
    name = unique_name("throttled")
    gw.create(name)
    lam = gw.client()
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    time.sleep(1.1)  # reservations are read at most once a second
    # When it is invoked, then it is throttled at once, 429 with Retry-After
    with pytest.raises(lam.exceptions.TooManyRequestsException) as info:
        lam.invoke(FunctionName=name)
    response = info.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert int(response["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) >= 1
    assert response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"


def test_a_client_sending_its_headers_slowly_does_not_hold_the_server(gw: GatewayKit) -> None:
    # Given clients that trickle a request's headers a byte at a time and never finish
    name = unique_name("busy")
    gw.create(name)
    stop = threading.Event()

    def slowloris() -> None:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            for byte in b"X-Slow: " + b"a" * 1000:
                if stop.wait(0.05):
                    return
                sock.sendall(bytes([byte]))

    threads = [threading.Thread(target=slowloris, daemon=True) for _ in range(20)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        # When others call meanwhile, then they are served
        assert fetch(gw.endpoint + "/healthz")[0] == 200
        lam = gw.client()
        for n in range(5):
            out = lam.invoke(FunctionName=name, Payload=json.dumps({"n": n}))
            assert json.loads(out["Payload"].read())["event"] == {"n": n}
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)


def test_errors_carry_a_request_id_and_an_aws_body(gw: GatewayKit) -> None:
    lam = gw.client()
    with pytest.raises(ClientError) as info:
        lam.get_function_configuration(FunctionName="no-such-function")
    meta = info.value.response["ResponseMetadata"]
    assert meta["RequestId"]
    assert meta["HTTPHeaders"]["x-amzn-errortype"] == "ResourceNotFoundException"
    assert "no-such-function" in info.value.response["Error"]["Message"]


def test_a_function_the_worker_cannot_run_is_a_service_exception(gw: GatewayKit) -> None:
    # Given a function whose code bundle (its own: no worker has it cached) has gone from the
    # store before any worker unpacked it
    import base64 as b64
    import io
    import zipfile

    name = unique_name("nocode")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", f"# {name}\ndef echo(event, context):\n    return event\n")
    made = gw.client().create_function(
        FunctionName=name, Runtime="python3.11", Role="any", Handler="app.echo",
        Code={"ZipFile": buf.getvalue()},
    )
    sha = b64.b64decode(made["CodeSha256"]).hex()
    gw.fleet.redis.delete(f"{gw.fleet.prefix}:code:{sha}")
    # When it is invoked, then the caller gets ServiceException (500) saying why
    lam = gw.client()
    with pytest.raises(ClientError) as info:
        lam.invoke(FunctionName=name)
    assert info.value.response["Error"]["Code"] == "ServiceException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert sha in info.value.response["Error"]["Message"]
