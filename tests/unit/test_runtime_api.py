"""The Runtime API's HTTP parsing and state machine, without a runtime (sandbox/runtimeapi.py)."""

from __future__ import annotations

import json
import socket

import pytest

from sandbox.httpconn import BadRequest, Connection
from sandbox.runtimeapi import MAX_RESPONSE_BYTES, RuntimeApi, error_object


@pytest.fixture
def pair():
    listener = socket.create_server(("127.0.0.1", 0))
    theirs = socket.create_connection(listener.getsockname())
    ours, _ = listener.accept()
    listener.close()
    conn = Connection(ours, 1024)
    yield conn, theirs
    conn.close()
    theirs.close()


def replies(theirs: socket.socket) -> bytes:
    theirs.setblocking(False)
    data = b""
    while True:
        try:
            chunk = theirs.recv(1 << 16)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def test_pipelined_requests_split_across_reads_are_each_parsed(pair):
    conn, _ = pair
    raw = (
        b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /b HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    got = []
    for i in range(0, len(raw), 7):  # in small pieces, as a slow socket delivers them
        got.extend(conn.feed(raw[i : i + 7]))
    assert [(r.method, r.path, r.body, r.close) for r in got] == [
        ("POST", "/a", b"hello", False),
        ("GET", "/b", b"", True),
    ]


def test_a_chunked_body_with_trailers_is_joined(pair):
    conn, _ = pair
    raw = (
        b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: y\r\n\r\n"
    )
    (req,) = conn.feed(raw)
    assert req.body == b"abcdefg" and req.size == 7


def test_a_body_past_the_cap_keeps_its_size_but_not_its_bytes(pair):
    conn, _ = pair
    body = b"x" * 5000
    (req,) = conn.feed(b"POST /d HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + body)
    assert req.size == 5000 and len(req.body) == 1024


@pytest.mark.parametrize(
    "raw",
    [b"NONSENSE\r\n\r\n", b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
     b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", b"GET / SPDY/3\r\n\r\n"],
)
def test_what_is_not_http_is_refused(pair, raw):
    conn, _ = pair
    with pytest.raises(BadRequest):
        conn.feed(raw)


def test_invocation_states_are_enforced_as_lambdas_are(pair):
    conn, theirs = pair
    api = RuntimeApi("arn:aws:lambda:us-east-1:000000000000:function:f", 0.0)

    def request(method: str, path: str, body: bytes = b"", **headers: str):
        head = f"{method} /2018-06-01/runtime/{path} HTTP/1.1\r\n"
        head += "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
        (req,) = conn.feed(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        api.handle(conn, req)
        return replies(theirs)

    # Before any invocation an answer is a state error
    assert b" 403 " in request("POST", "invocation/x/response", b"{}")
    # The first GET ends init and parks until an event is submitted
    assert request("GET", "invocation/next") == b"" and api.ready is not None
    assert api.waiting
    api.submit("rid-1", 1234.0, b'{"e": 1}')
    event = replies(theirs)
    assert b"Lambda-Runtime-Aws-Request-Id: rid-1\r\n" in event
    assert b"Lambda-Runtime-Deadline-Ms: 1234\r\n" in event and event.endswith(b'{"e": 1}')
    # A wrong id is 400, the right one 202, a second answer 403
    assert b'"InvalidRequestID"' in request("POST", "invocation/rid-0/response", b"1")
    assert b" 202 " in request("POST", "invocation/rid-1/response", b"[1]")
    assert api.answer is not None and api.answer.ok and api.answer.body == b"[1]"
    assert b'"InvalidStateTransition"' in request("POST", "invocation/rid-1/error", b"{}")
    # An init error after init is refused; an unknown path is 404
    assert b" 403 " in request("POST", "init/error", b"{}")
    assert b" 404 " in request("GET", "nowhere")


def test_an_oversized_response_fails_the_invocation_with_413(pair):
    conn, theirs = pair
    conn = Connection(conn.sock, MAX_RESPONSE_BYTES + 10)
    api = RuntimeApi("arn", 0.0)
    (get,) = conn.feed(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n")
    api.handle(conn, get)
    api.submit("r", 0.0, b"{}")
    replies(theirs)
    size = MAX_RESPONSE_BYTES + 1
    head = f"POST /2018-06-01/runtime/invocation/r/response HTTP/1.1\r\nContent-Length: {size}"
    (post,) = conn.feed(head.encode() + b"\r\n\r\n" + b"x" * size)
    api.handle(conn, post)
    assert b" 413 " in replies(theirs)
    assert api.answer is not None and api.answer.error_type == "Function.ResponseSizeTooLarge"


def test_posted_errors_always_become_a_json_object_with_a_type():
    assert error_object(b'{"errorMessage": "m"}', "H.Type", "Unhandled") == (
        "H.Type", json.dumps({"errorMessage": "m", "errorType": "H.Type"}).encode()
    )
    assert error_object(b"[1, 2]", None, "Unhandled")[0] == "Unhandled"
    etype, body = error_object(b"", None, "Runtime.InitError")
    assert etype == "Runtime.InitError" and json.loads(body)["errorMessage"] == ""
