"""Function URLs: the payload 2.0 event, the response mapping and CORS, without services."""

from __future__ import annotations

import base64
import json

from gateway.invoke_api import split_function_name
from gateway.urlevent import HttpRequest, cors_headers, event, response


def _request(**changes: object) -> HttpRequest:
    base = {
        "method": "GET", "raw_path": "/a/b", "raw_query": "", "headers": [("Host", "gw")],
        "body": b"", "source_ip": "10.0.0.1", "domain": "gw", "url_id": "abc",
        "request_id": "rid-1",
    }
    return HttpRequest(**{**base, **changes})  # type: ignore[arg-type]


def test_repeated_headers_and_query_parameters_are_comma_joined() -> None:
    out = event(_request(raw_query="a=1&a=2&b=", headers=[("X-A", "1"), ("x-a", "2")]))
    assert out["headers"]["x-a"] == "1,2"
    assert out["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert "cookies" not in out and "body" not in out and out["isBase64Encoded"] is False


def test_cookies_leave_the_headers_and_bodies_are_text_or_base64() -> None:
    out = event(_request(headers=[("Cookie", "a=1; b=2"), ("Content-Type", "application/json")],
                         body=b'{"x": 1}'))
    assert out["cookies"] == ["a=1", "b=2"] and "cookie" not in out["headers"]
    assert out["body"] == '{"x": 1}' and out["isBase64Encoded"] is False
    binary = event(_request(headers=[("Content-Type", "image/png")], body=b"\x89PNG"))
    assert binary["isBase64Encoded"] and base64.b64decode(binary["body"]) == b"\x89PNG"
    not_utf8 = event(_request(headers=[("Content-Type", "text/plain")], body=b"\xff\xfe"))
    assert not_utf8["isBase64Encoded"]


def test_a_result_without_status_code_is_200_json_as_it_is() -> None:
    out = response(b'{"hello": "world"}')
    assert out.status == 200 and out.body == b'{"hello": "world"}'
    assert ("content-type", "application/json") in out.headers
    assert response(b'"text"').body == b'"text"'


def test_a_status_code_result_is_taken_apart() -> None:
    out = response(json.dumps({
        "statusCode": 302, "headers": {"Location": "/x"}, "cookies": ["a=1", "b=2"],
        "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True,
    }).encode())
    assert out.status == 302 and out.body == b"\x00\x01"
    assert ("location", "/x") in out.headers
    assert [v for k, v in out.headers if k == "set-cookie"] == ["a=1", "b=2"]
    assert response(b'{"statusCode": "teapot"}').status == 502


def test_cors_answers_only_allowed_origins() -> None:
    cors = {"AllowOrigins": ["https://a.example"], "AllowMethods": ["GET"], "MaxAge": 5}
    pre = dict(cors_headers(cors, "https://a.example", preflight=True))
    assert pre["access-control-allow-origin"] == "https://a.example"
    assert pre["access-control-allow-methods"] == "GET" and pre["access-control-max-age"] == "5"
    assert cors_headers(cors, "https://b.example", preflight=True) == []
    assert dict(cors_headers({"AllowOrigins": ["*"]}, "https://z", preflight=False)) == {
        "access-control-allow-origin": "*"
    }


def test_function_names_in_every_form() -> None:
    arn = "arn:aws:lambda:us-east-1:000000000000:function:fn"
    assert split_function_name("fn") == ("fn", None)
    assert split_function_name("fn:live") == ("fn", "live")
    assert split_function_name(arn + ":3") == ("fn", "3")
    assert split_function_name("000000000000:function:fn", "2") == ("fn", "2")
