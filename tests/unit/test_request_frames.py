"""The hand-written frames of amqp_fastpath (a sync request, an ack) are pika's own bytes."""

from __future__ import annotations

import pika
import pytest
from pika import frame
from pika.spec import Basic

from broker_adapters.amqp_frames import ack_frame, request_frames


def pika_bytes(channel: int, queue: str, body: bytes, props: pika.BasicProperties,
               body_max: int) -> bytes:
    method = frame.Method(channel, Basic.Publish(exchange="", routing_key=queue, mandatory=True))
    parts = [method.marshal(), frame.Header(channel, len(body), props).marshal()]
    for start in range(0, len(body), body_max):
        parts.append(frame.Body(channel, body[start : start + body_max]).marshal())
    return b"".join(parts)


@pytest.mark.parametrize("size", [0, 1, 200, 131_064, 131_065, 400_000])
def test_request_frames_are_the_bytes_pika_marshals(size: int) -> None:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    props = pika.BasicProperties(
        delivery_mode=1, correlation_id="8f14e45f-ceea-467f-a9f8-21a0e4b1c2d3",
        reply_to="redis+list:///p:reply:8f14e45f", expiration="33000",
    )
    ours = request_frames(3, "prefix.sync.default", body, props.reply_to,
                          props.correlation_id, props.expiration, 131_064)
    assert ours == pika_bytes(3, "prefix.sync.default", body, props, 131_064)


def test_a_name_longer_than_a_short_string_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 255 bytes"):
        request_frames(1, "q" * 256, b"{}", "r", "c", "1", 131_064)


@pytest.mark.parametrize("tag, multiple", [(1, False), (2**40 + 7, True)])
def test_ack_frames_are_the_bytes_pika_marshals(tag: int, multiple: bool) -> None:
    expected = frame.Method(5, Basic.Ack(delivery_tag=tag, multiple=multiple)).marshal()
    assert ack_frame(5, tag, multiple) == expected
