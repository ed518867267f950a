"""Function URLs with a plain HTTP client: payload 2.0 in, Lambda's response mapping out."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from support.gatewaykit import GatewayKit, fetch, unique_name

pytestmark = pytest.mark.slow


def url_for(gw: GatewayKit, handler: str, auth: str = "NONE", **options: Any) -> tuple[str, str]:
    name = unique_name(handler.split(".")[-1].replace("_", "-"))
    gw.create(name, handler=handler, Timeout=10)
    made = gw.client().create_function_url_config(FunctionName=name, AuthType=auth, **options)
    return name, made["FunctionUrl"]


def test_a_request_becomes_a_payload_2_0_event(gw: GatewayKit) -> None:
    # Given a URL whose function returns its event in the body
    _, url = url_for(gw, "app.http")
    # When a POST with a path, a repeated query parameter, cookies and a JSON body comes
    status, headers, body = fetch(
        url + "orders/42?tag=a&tag=b&status=201",
        method="POST",
        body=b'{"item": "tea"}',
        headers={"Content-Type": "application/json", "Cookie": "session=s1; theme=dark",
                 "X-Multi": "one", "User-Agent": "url-test/1.0"},
    )
    # Then the function sees Lambda's event, and its status, headers and cookies come back
    assert status == 201
    assert headers["x-handler"] == "http"
    assert headers.get_all("set-cookie") == ["a=1; Path=/", "b=2"]
    event = json.loads(body)
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/orders/42"
    assert event["rawQueryString"] == "tag=a&tag=b&status=201"
    assert event["queryStringParameters"] == {"tag": "a,b", "status": "201"}
    assert event["cookies"] == ["session=s1", "theme=dark"]
    assert event["headers"]["x-multi"] == "one" and "cookie" not in event["headers"]
    assert event["body"] == '{"item": "tea"}' and event["isBase64Encoded"] is False
    http = event["requestContext"]["http"]
    assert http == {"method": "POST", "path": "/orders/42", "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1", "userAgent": "url-test/1.0"}
    context = event["requestContext"]
    assert context["requestId"] == headers["x-amzn-RequestId"]
    assert abs(context["timeEpoch"] / 1000 - time.time()) < 60 and context["time"]


def test_a_binary_body_is_base64_both_ways(gw: GatewayKit) -> None:
    _, url = url_for(gw, "app.http")
    status, _, body = fetch(url, "PUT", bytes(range(256)),
                            {"Content-Type": "application/octet-stream"})
    event = json.loads(body)
    assert status == 200 and event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == bytes(range(256))
    _, binary_url = url_for(gw, "app.binary")
    status, headers, body = fetch(binary_url)
    assert status == 200 and body == bytes(range(256))
    assert headers["content-type"] == "application/octet-stream"


def test_a_result_without_status_code_is_200_json(gw: GatewayKit) -> None:
    _, url = url_for(gw, "app.plain")
    status, headers, body = fetch(url + "anything")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"hello": "world"}


def test_a_function_error_is_502_and_a_throttle_429(gw: GatewayKit) -> None:
    _, url = url_for(gw, "app.fail")
    status, _, body = fetch(url)
    assert status == 502 and json.loads(body) == {"Message": "Internal Server Error"}
    name, url = url_for(gw, "app.plain")
    gw.client().put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    time.sleep(1.1)
    status, _, body = fetch(url)
    assert status == 429 and json.loads(body) == {"Message": "Rate Exceeded."}


def test_cors_preflight_is_answered_from_the_config(gw: GatewayKit) -> None:
    cors = {"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"],
            "AllowHeaders": ["content-type"], "ExposeHeaders": ["x-handler"], "MaxAge": 300}
    _, url = url_for(gw, "app.http", Cors=cors)
    status, headers, _ = fetch(url + "x", "OPTIONS", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert status == 200
    assert headers["access-control-allow-origin"] == "https://app.example"
    assert headers["access-control-allow-methods"] == "GET,POST"
    assert headers["access-control-max-age"] == "300"
    status, headers, _ = fetch(url, headers={"Origin": "https://app.example"})
    assert headers["access-control-allow-origin"] == "https://app.example"
    assert headers["access-control-expose-headers"] == "x-handler"
    _, headers, _ = fetch(url, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in headers


def test_an_aws_iam_url_wants_a_signature(gw: GatewayKit) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    _, url = url_for(gw, "app.plain", auth="AWS_IAM")
    status, _, body = fetch(url)
    assert status == 403 and json.loads(body) == {"Message": "Forbidden"}
    key_id, secret = gw.new_key()
    request = AWSRequest(method="GET", url=url + "signed?x=1")
    SigV4Auth(Credentials(key_id, secret), "lambda", "us-east-1").add_auth(request)
    status, _, body = fetch(url + "signed?x=1", headers=dict(request.headers))
    assert status == 200 and json.loads(body) == {"hello": "world"}


def test_an_unknown_or_deleted_url_is_404(gw: GatewayKit) -> None:
    status, _, _ = fetch(gw.endpoint + "/url/doesnotexist/")
    assert status == 404
    name, url = url_for(gw, "app.plain")
    gw.client().delete_function_url_config(FunctionName=name)
    time.sleep(1.1)  # URL configs are cached a second
    assert fetch(url)[0] == 404


def test_a_powertools_http_resolver_app_runs_unchanged(gw: GatewayKit) -> None:
    _, url = url_for(gw, "powertools_app.handler")
    status, _, body = fetch(url + "hello/warren?q=yes")
    assert status == 200 and json.loads(body) == {"message": "hello warren", "query": "yes"}
    status, _, body = fetch(url + "items", "POST", b'{"sku": 7}',
                            {"Content-Type": "application/json"})
    assert status == 201 and json.loads(body) == {"created": {"sku": 7}}
    assert fetch(url + "missing")[0] == 404


def test_a_mangum_wrapped_fastapi_app_runs_unchanged(gw: GatewayKit) -> None:
    _, url = url_for(gw, "fastapi_app.handler")
    status, _, body = fetch(url + "items/5?q=tea")
    assert status == 200 and json.loads(body) == {"item_id": 5, "q": "tea"}
    status, _, body = fetch(url + "echo", "POST", b'{"a": [1, 2]}',
                            {"Content-Type": "application/json"})
    assert status == 200 and json.loads(body) == {"got": {"a": [1, 2]}}
    status, headers, body = fetch(url + "teapot")
    assert status == 418 and json.loads(body) == {"short": "and stout"}
    assert any("brew=green" in c for c in headers.get_all("set-cookie"))


def test_warren_url_cli_create_get_delete(gw: GatewayKit) -> None:
    name = unique_name("cli-url")
    gw.create(name, handler="app.plain")
    made = gw.fleet.cli("url", "create", name, "--auth-type", "NONE",
                        "--public-url", gw.endpoint, "--output", "json")
    assert made.returncode == 0, made.stderr
    config = json.loads(made.stdout)
    assert config["AuthType"] == "NONE" and config["FunctionUrl"].startswith(gw.endpoint)
    status, _, body = fetch(config["FunctionUrl"] + "via-cli")
    assert status == 200 and json.loads(body) == {"hello": "world"}
    got = gw.fleet.cli("url", "get", name, "--public-url", gw.endpoint, "--output", "json")
    assert json.loads(got.stdout)["FunctionUrl"] == config["FunctionUrl"]
    assert gw.fleet.cli("url", "delete", name).returncode == 0
    missing = gw.fleet.cli("url", "get", name)
    assert missing.returncode == 3 and b"has no URL" in missing.stderr  # not found
    unknown = gw.fleet.cli("url", "create", "no-such-function")
    assert unknown.returncode == 3 and b"does not exist" in unknown.stderr
