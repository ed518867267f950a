"""SigV4 on every API request, Warren's keys (`warren key`), and `--auth none`."""

from __future__ import annotations

import datetime
import json
import time
from unittest import mock

import pytest
from support.gatewaykit import GatewayKit, fetch, unique_name

pytestmark = pytest.mark.slow


def _status_and_code(call: object) -> tuple[int, str]:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as info:
        call()  # type: ignore[operator]
    response = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def test_a_wrong_secret_is_refused_with_invalid_signature(gw: GatewayKit) -> None:
    key_id, _secret = gw.new_key()
    lam = gw.client((key_id, "not-the-secret"))
    assert _status_and_code(lam.list_functions) == (403, "InvalidSignatureException")


def test_an_unknown_key_is_refused(gw: GatewayKit) -> None:
    lam = gw.client(("AKWRDOESNOTEXIST0000", "whatever"))
    assert _status_and_code(lam.list_functions) == (403, "UnrecognizedClientException")


def test_a_request_signed_more_than_5_minutes_ago_is_refused(gw: GatewayKit) -> None:
    lam = gw.client()
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=6)
    with mock.patch("botocore.auth.get_current_datetime", return_value=old):
        status, code = _status_and_code(lam.list_functions)
    assert (status, code) == (403, "InvalidSignatureException")
    # And one signed 4 minutes ago still passes
    recent = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=4)
    with mock.patch("botocore.auth.get_current_datetime", return_value=recent):
        assert lam.list_functions()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_a_tampered_body_fails_the_signature(gw: GatewayKit) -> None:
    # Given a request botocore signed, whose body is changed on the way
    lam = gw.client()
    name = unique_name("tamper")
    gw.create(name)

    def tamper(request: object, **_: object) -> None:
        # before-send carries the prepared request, signed already
        request.body = b"[]"  # type: ignore[attr-defined]  # as long as the signed {}

    lam.meta.events.register("before-send.lambda.Invoke", tamper)
    assert _status_and_code(lambda: lam.invoke(FunctionName=name, Payload=b"{}")) == (
        403,
        "InvalidSignatureException",
    )


def test_an_unsigned_request_gets_an_aws_shaped_403(gw: GatewayKit) -> None:
    status, headers, body = fetch(gw.endpoint + "/2015-03-31/functions")
    assert status == 403
    assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert json.loads(body)["message"] == "Missing Authentication Token"


def test_a_malformed_authorization_header_is_refused(gw: GatewayKit) -> None:
    status, headers, _ = fetch(
        gw.endpoint + "/2015-03-31/functions",
        headers={"Authorization": "AWS4-HMAC-SHA256 Credential=nonsense", "X-Amz-Date": "x"},
    )
    assert status == 403
    assert headers["x-amzn-ErrorType"] == "IncompleteSignatureException"


def test_key_cli_prints_the_secret_once_and_a_deleted_key_stops_working(gw: GatewayKit) -> None:
    # Given a key made with `warren key create --output json`
    made = gw.fleet.cli("key", "create", "ci-bot", "--output", "json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert sorted(key) == ["access_key_id", "secret_access_key"]
    lam = gw.client((key["access_key_id"], key["secret_access_key"]))
    assert lam.list_functions()["ResponseMetadata"]["HTTPStatusCode"] == 200
    # Then `key list` shows it without its secret
    listed = gw.fleet.cli("key", "list", "--output", "json")
    rows = json.loads(listed.stdout)
    assert any(r["access_key_id"] == key["access_key_id"] and r["name"] == "ci-bot" for r in rows)
    assert key["secret_access_key"].encode() not in listed.stdout + listed.stderr
    # When it is deleted, then requests signed with it are refused within a second or so
    deleted = gw.fleet.cli("key", "delete", key["access_key_id"])
    assert deleted.returncode == 0, deleted.stderr
    time.sleep(1.2)
    assert _status_and_code(lam.list_functions) == (403, "UnrecognizedClientException")
    # And deleting it again says it does not exist
    again = gw.fleet.cli("key", "delete", key["access_key_id"])
    assert again.returncode == 3 and b"does not exist" in again.stderr  # not found


def test_auth_none_warns_loudly_and_takes_unsigned_requests(gw: GatewayKit) -> None:
    open_gw = GatewayKit(gw.fleet, None, "--auth", "none")
    try:
        assert fetch(open_gw.endpoint + "/2015-03-31/functions")[0] == 200
        log = b"".join(p.read_bytes() for p in gw.fleet.logdir.glob("gateway-*.log"))
        assert b"WARNING: --auth none" in log and b"WITHOUT a signature" in log
    finally:
        open_gw.close()
        gw.fleet.stop(open_gw.proc)
