"""The wire codec round-trips envelopes and refuses anything else with DecodeError."""

import msgpack
import pytest

from warren import codec
from warren.errors import DecodeError


def test_envelope_round_trips_bytes_and_nested_values():
    body = {"id": "r-1", "payload": b'{"x": 1}', "n": [1, 2.5, None, True]}
    assert codec.decode(codec.encode("invocation", body), "invocation") == body


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"\xc1garbage", "not a msgpack envelope"),
        (msgpack.packb([1, 2, 3]), "not a Warren envelope"),
        (msgpack.packb({"v": 99, "k": "invocation", "b": {}}), "unsupported envelope version 99"),
    ],
)
def test_malformed_messages_raise_decode_error(raw, fragment):
    with pytest.raises(DecodeError, match=fragment):
        codec.decode(raw)


def test_an_envelope_of_the_wrong_kind_is_refused():
    with pytest.raises(DecodeError, match="expected a 'outcome' envelope"):
        codec.decode(codec.encode("invocation", {}), "outcome")


def test_json_helpers_raise_decode_error_on_bad_json():
    assert codec.loads_json(codec.dumps_json({"a": [1]})) == {"a": [1]}
    with pytest.raises(DecodeError, match="not valid JSON"):
        codec.loads_json(b"{nope")
