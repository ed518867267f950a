"""The invocation and result wire contracts, and the invoker's payload rules."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from router.dispatch import event_bytes
from warren import codec
from warren.errors import DecodeError, InvalidParameter
from warren.function import AsyncConfig, FunctionSpec
from warren.invocation import (
    EVENT,
    Invocation,
    InvocationResult,
    decode_chunk,
    encode_chunk,
    log_tail,
)


def spec() -> FunctionSpec:
    return FunctionSpec(
        "f",
        "app.h",
        "python3.11",
        256,
        7,
        {"K": "V"},
        "d",
        "a" * 64,
        9,
        "3",
        AsyncConfig(1, 120, "amqp:///ok", None),
        "2026-01-01T00:00:00.000+00:00",
    )


def test_a_chunk_round_trips_every_field() -> None:
    original = [
        Invocation(
            "r1",
            spec(),
            b'{"x": 1}',
            EVENT,
            attempt=2,
            accepted_at=12.5,
            lease_key="k",
            lease_expires=99.0,
            log_tail=True,
        ),
        Invocation("r2", spec(), b"[]"),
        Invocation("r3", spec(), b"{}", lease_key="k", held_lease="f|r0"),
    ]
    assert decode_chunk(encode_chunk(original)) == original
    assert original[2].lease_id == "f|r0"  # a held lease keeps the id it was taken under
    assert original[1].lease_id == "f|r2"


def test_a_chunk_carries_each_spec_once_and_reads_the_inline_form_too() -> None:
    one, other = spec(), replace(spec(), version="4")
    invs = [Invocation(f"r{n}", one if n % 2 else other, b"{}") for n in range(100)]
    data = encode_chunk(invs)
    body = codec.decode(data, "invocations")
    assert len(body["specs"]) == 2 and len(body["items"]) == 100
    assert "spec" not in body["items"][0]
    decoded = decode_chunk(data)
    assert decoded == invs
    assert decoded[1].spec is decoded[3].spec  # decoded once per chunk, shared
    assert len(data) < len(codec.encode("invocations", [i.to_wire() for i in invs])) / 3
    # the earlier body (a list with the spec inline in every item) still decodes
    assert decode_chunk(codec.encode("invocations", [i.to_wire() for i in invs])) == invs


@pytest.mark.parametrize(
    "data",
    [
        codec.encode("invocations", {"specs": "x", "items": []}),
        codec.encode("invocations", {"specs": [{}], "items": [{"s": 0}]}),
        codec.encode("invocations", {"specs": [], "items": [{"id": "r", "s": 3}]}),
        codec.encode("invocations", {"specs": [], "items": []}),
    ],
)
def test_bad_spec_tables_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_chunk(data)


@pytest.mark.parametrize(
    "data",
    [
        b"junk",
        codec.encode("invocations", []),
        codec.encode("other", [1]),
        codec.encode("invocations", [{}]),
    ],
)
def test_bad_chunks_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_chunk(data)


def test_result_round_trips_and_decodes_the_payload() -> None:
    result = InvocationResult(
        200,
        function_error="Unhandled",
        executed_version="3",
        log_result=log_tail("hello"),
        request_id="r",
        raw_payload=b'{"errorType": "E"}',
    )
    back = InvocationResult.decode(result.encode())
    assert back.payload == {"errorType": "E"} and back.function_error == "Unhandled"
    assert back.logs == "hello"
    assert back.to_dict()["status_code"] == 200


def test_log_tail_is_the_last_4_kb_in_base64() -> None:
    text = "a" * 5000 + "END"
    tail = base64.b64decode(log_tail(text))
    assert len(tail) == 4096 and tail.endswith(b"END")


def test_payloads_must_be_json() -> None:
    assert event_bytes(None) == b"{}"
    assert event_bytes({"a": 1}) == b'{"a":1}'
    assert event_bytes('{"a": 1}') == b'{"a": 1}'
    with pytest.raises(InvalidParameter, match="not valid JSON"):
        event_bytes(b"{nope")
    with pytest.raises(InvalidParameter):
        event_bytes({"s": {1, 2}})
