"""AMQP 0-9-1 frames written by hand: a sync request's publish and a worker's ack.

The sync path sends one of each per call, and pika's marshalling costs ten times what packing
these few fields does. The bytes are pika's own (tests/unit/test_request_frames.py compares
them); the fast paths in amqp_fastpath.py put them on the socket.
"""

from __future__ import annotations

import struct

from pika.spec import Basic

_FRAME_HEAD = struct.Struct(">BHI")  # frame type, channel, payload size
_PUBLISH_HEAD = struct.Struct(">IH")  # Basic.Publish's class/method index, reserved short
_CONTENT_HEAD = struct.Struct(">HHQH")  # class 60, weight 0, body size, property flags
# delivery-mode, correlation-id, reply-to, expiration: a sync request's properties, in the
# order AMQP 0-9-1 encodes them (their flags are bits 12, 10, 9 and 8).
_REQUEST_FLAGS = (1 << 12) | (1 << 10) | (1 << 9) | (1 << 8)
_FRAME_END = b"\xce"


def _shortstr(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError(f"an AMQP short string is at most 255 bytes: {text[:40]!r}...")
    return bytes((len(raw),)) + raw


def request_frames(
    channel: int, queue: str, body: bytes, reply_to: str, correlation_id: str,
    expiration: str, body_max: int,
) -> bytes:
    """A mandatory, transient Basic.Publish to `queue` on the default exchange as wire bytes:
    the same bytes pika marshals for it (a contract test holds that), in a tenth of the time."""
    method = _PUBLISH_HEAD.pack(Basic.Publish.INDEX, 0) + b"\x00" + _shortstr(queue) + b"\x01"
    props = b"".join((
        _CONTENT_HEAD.pack(60, 0, len(body), _REQUEST_FLAGS), b"\x01", _shortstr(correlation_id),
        _shortstr(reply_to), _shortstr(expiration),
    ))
    parts = [_FRAME_HEAD.pack(1, channel, len(method)), method, _FRAME_END,
             _FRAME_HEAD.pack(2, channel, len(props)), props, _FRAME_END]
    for start in range(0, len(body), body_max):
        piece = body[start : start + body_max]
        parts += [_FRAME_HEAD.pack(3, channel, len(piece)), piece, _FRAME_END]
    return b"".join(parts)


_ACK = struct.Struct(">BHIIQB")  # frame head, Basic.Ack's index, delivery tag, multiple bit


def ack_frame(channel: int, tag: int, multiple: bool = False) -> bytes:
    """Basic.Ack as wire bytes (pika's own, a contract test holds that)."""
    return _ACK.pack(1, channel, 13, Basic.Ack.INDEX, tag, int(multiple)) + _FRAME_END
