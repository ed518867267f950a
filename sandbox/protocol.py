"""The wire between the caller and a sandbox child: length-prefixed frames, stdlib only.

The child never imports msgpack or orjson: a handler that bundles its own copy of either must get
its own, so everything the child loads before the handler is standard library. Each frame is a
4-byte big-endian length followed by a fixed struct header and raw byte fields.

    wake     (caller -> spare):  "W": a spec follows shortly (the spare stays awake for it)
    spec     (caller -> child):  "S" + the spawn spec as JSON (once, first; the /tmp volume's
                                 mount fd rides along as SCM_RIGHTS)
    request  (caller -> child):  "I" + deadline_epoch_ms(d) + len(id)(H) + id + payload JSON,
                                 or "C" + ... + id + len(ctx)(I) + client context JSON + payload;
                                 "i"/"c": the same with a timeout in ms instead of a deadline,
                                 counted from when the child reads it (a first request sent
                                 before the child's init is done: init must not eat its time)
    ready    (child -> caller):  "R" + VERSION(B) + init_ms(d) + ok(B) + error JSON
    response (child -> caller):  "O" + ok(B) + duration_ms(d) + max_rss_kb(Q)
                                 + len(error_type)(H) + error_type + body JSON
"""

from __future__ import annotations

import socket
import struct
import time

VERSION = 2
LENGTH = struct.Struct(">I")
REQUEST = struct.Struct(">cdH")
READY = struct.Struct(">cBdB")
RESPONSE = struct.Struct(">cBdQH")


WAKE = LENGTH.pack(1) + b"W"


def pack_spec(spec_json: bytes) -> bytes:
    return LENGTH.pack(1 + len(spec_json)) + b"S" + spec_json


def unpack_spec(frame: bytes) -> bytes:
    """The spec's JSON; ValueError if the frame is not a spec."""
    if frame[:1] != b"S":
        raise ValueError("expected a spec frame")
    return frame[1:]


def pack_request(
    request_id: str,
    deadline_epoch_ms: float,
    payload: bytes,
    client_context: bytes = b"",
    timeout_ms: float | None = None,
) -> bytes:
    """Kind "I"; with a client context, kind "C" and the context (length-prefixed) after the id.

    With `timeout_ms`, kinds "i"/"c": the deadline is set by the child when it reads the frame.
    """
    rid = request_id.encode()
    relative = timeout_ms is not None
    when = timeout_ms if timeout_ms is not None else deadline_epoch_ms
    if not client_context:
        body_len = REQUEST.size + len(rid) + len(payload)
        head = REQUEST.pack(b"i" if relative else b"I", when, len(rid))
        return b"".join((LENGTH.pack(body_len), head, rid, payload))
    body_len = REQUEST.size + len(rid) + LENGTH.size + len(client_context) + len(payload)
    head = REQUEST.pack(b"c" if relative else b"C", when, len(rid))
    return b"".join(
        (LENGTH.pack(body_len), head, rid, LENGTH.pack(len(client_context)), client_context,
         payload)
    )


def unpack_request(frame: bytes) -> tuple[str, float, bytes, bytes]:
    """(request id, deadline, payload, client context or b"")."""
    kind, deadline, rid_len = REQUEST.unpack_from(frame)
    if kind in b"ic":
        deadline += time.time() * 1000
    start = REQUEST.size
    rid = frame[start : start + rid_len].decode()
    at = start + rid_len
    if kind not in b"Cc":
        return rid, deadline, frame[at:], b""
    (cc_len,) = LENGTH.unpack_from(frame, at)
    at += LENGTH.size
    return rid, deadline, frame[at + cc_len :], frame[at : at + cc_len]


def pack_ready(init_ms: float, error_json: bytes | None) -> bytes:
    body = READY.pack(b"R", VERSION, init_ms, error_json is None) + (error_json or b"")
    return LENGTH.pack(len(body)) + body


def unpack_ready(frame: bytes) -> tuple[int, float, bytes | None]:
    _, version, init_ms, ok = READY.unpack_from(frame)
    return version, init_ms, None if ok else frame[READY.size :]


def pack_response(
    ok: bool, duration_ms: float, max_rss_kb: int, error_type: str, body: bytes
) -> bytes:
    etype = error_type.encode()
    head = RESPONSE.pack(b"O", ok, duration_ms, max_rss_kb, len(etype))
    return b"".join((LENGTH.pack(len(head) + len(etype) + len(body)), head, etype, body))


def unpack_response(frame: bytes) -> tuple[bool, float, int, str, bytes]:
    _, ok, duration_ms, max_rss_kb, etype_len = RESPONSE.unpack_from(frame)
    start = RESPONSE.size
    etype = frame[start : start + etype_len].decode()
    return bool(ok), duration_ms, max_rss_kb, etype, frame[start + etype_len :]


class FrameReader:
    """Accumulates bytes from a stream and yields whole frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def missing(self) -> int:
        """Bytes still needed to complete the next frame (at least 1 when none is whole)."""
        if len(self._buf) < LENGTH.size:
            return LENGTH.size - len(self._buf)
        size: int = LENGTH.unpack_from(self._buf)[0]
        return max(1, LENGTH.size + size - len(self._buf))

    def frame(self) -> bytes | None:
        if len(self._buf) < LENGTH.size:
            return None
        (size,) = LENGTH.unpack_from(self._buf)
        end = LENGTH.size + size
        if len(self._buf) < end:
            return None
        frame = bytes(self._buf[LENGTH.size : end])
        del self._buf[:end]
        return frame


READ_SIZE = 1 << 16  # one recv() takes a whole small frame; a big one is read as it is needed


def recv_frame(sock: socket.socket, reader: FrameReader) -> bytes | None:
    """Blocking read of one frame; None on end of stream (used by the child).

    A request usually arrives whole, so this is one recv() per invocation, not one for the
    length and one for the rest.
    """
    while True:
        frame = reader.frame()
        if frame is not None:
            return frame
        data = sock.recv(max(READ_SIZE, reader.missing()))
        if not data:
            return None
        reader.feed(data)
