"""SigV4 verification against requests botocore signs, and the ways a request is refused."""

from __future__ import annotations

import asyncio
import datetime
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.errors import ApiError
from gateway.sigv4 import SignedRequest, SigV4Verifier, canonical_path, canonical_query

KEY_ID, SECRET = "AKWRTESTTESTTESTTEST", "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3"


def _signed(method: str, url: str, body: bytes = b"", *, secret: str = SECRET,
            when: datetime.datetime | None = None, service: str = "lambda") -> SignedRequest:
    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "x/y"})
    auth = SigV4Auth(Credentials(KEY_ID, secret), service, "eu-west-1")
    if when is None:
        auth.add_auth(request)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            auth.add_auth(request)
    path, _, query = url.split("//", 1)[1].partition("/")[2].partition("?")
    headers = [(k, v) for k, v in request.headers.items()]
    headers.append(("Host", url.split("//", 1)[1].split("/", 1)[0]))
    return SignedRequest(method, "/" + path, query, headers, body)


def _verifier(known: dict[str, str] | None = None) -> SigV4Verifier:
    keys = {KEY_ID: SECRET} if known is None else known

    async def secret_for(key_id: str) -> str | None:
        return keys.get(key_id)

    return SigV4Verifier(secret_for)


def _verify(request: SignedRequest, verifier: SigV4Verifier | None = None) -> str:
    return asyncio.run((verifier or _verifier()).verify(request))


def _refusal(request: SignedRequest, verifier: SigV4Verifier | None = None) -> str:
    with pytest.raises(ApiError) as info:
        _verify(request, verifier)
    assert info.value.status == 403
    return info.value.code


def test_a_request_botocore_signed_verifies() -> None:
    url = "http://127.0.0.1:9600/2015-03-31/functions/my-fn%3Alive/invocations?Qualifier=1"
    assert _verify(_signed("POST", url, b'{"a": 1}')) == KEY_ID


def test_query_strings_with_odd_characters_verify() -> None:
    url = "http://h:1/2015-03-31/functions?Marker=a%2Fb%20c&MaxItems=2&FunctionVersion=ALL"
    assert _verify(_signed("GET", url)) == KEY_ID


def test_a_changed_body_path_or_secret_fails() -> None:
    good = _signed("POST", "http://h:1/2015-03-31/functions/f/invocations", b"{}")
    assert _refusal(SignedRequest(good.method, good.raw_path, good.raw_query, good.headers,
                                  b"[]")) == "InvalidSignatureException"
    assert _refusal(SignedRequest(good.method, "/2015-03-31/functions/g/invocations",
                                  good.raw_query, good.headers, b"{}")) == (
        "InvalidSignatureException"
    )
    wrong = _signed("GET", "http://h:1/x", secret="not-it")
    assert _refusal(wrong) == "InvalidSignatureException"


def test_unknown_keys_unsigned_and_malformed_requests_are_refused() -> None:
    request = _signed("GET", "http://h:1/x")
    assert _refusal(request, _verifier({})) == "UnrecognizedClientException"
    bare = SignedRequest("GET", "/x", "", [("Host", "h:1")], b"")
    assert _refusal(bare) == "MissingAuthenticationTokenException"
    broken = SignedRequest("GET", "/x", "", [("Authorization", "AWS4-HMAC-SHA256 nope")], b"")
    assert _refusal(broken) == "IncompleteSignatureException"


def test_a_signature_more_than_5_minutes_old_or_ahead_is_expired() -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    for delta in (datetime.timedelta(minutes=6), datetime.timedelta(minutes=-6)):
        request = _signed("GET", "http://h:1/x", when=now - delta)
        assert _refusal(request) == "InvalidSignatureException"
    assert _verify(_signed("GET", "http://h:1/x", when=now - datetime.timedelta(minutes=4)))


def test_a_stated_body_hash_must_be_the_body_s() -> None:
    good = _signed("POST", "http://h:1/x", b"{}")
    stated = [*good.headers, ("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")]
    refused = SignedRequest(good.method, good.raw_path, good.raw_query, stated, good.body)
    assert _refusal(refused) == "InvalidSignatureException"


def test_another_service_s_scope_is_refused() -> None:
    assert _refusal(_signed("GET", "http://h:1/x", service="s3")) == "InvalidSignatureException"


def test_canonical_forms() -> None:
    assert canonical_path("/a/b/../c/") == "/a/c/"
    assert canonical_path("/fn%3Alive") == "/fn%253Alive"  # encoded again, as botocore signs
    assert canonical_query("b=2&a=1&a=0") == "a=0&a=1&b=2"
    assert canonical_query("x=a%20b&y=") == "x=a%20b&y="
