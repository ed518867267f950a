"""The wire codec: msgpack envelopes with a version between our processes, orjson for people."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson

from warren.errors import DecodeError

VERSION = 1


def encode(kind: str, body: Any) -> bytes:
    """Wrap `body` in an envelope `{"v": VERSION, "k": kind, "b": body}` and pack it."""
    return msgpack.packb({"v": VERSION, "k": kind, "b": body}, use_bin_type=True)  # type: ignore[no-any-return]


def decode(data: bytes, kind: str | None = None) -> Any:
    """Unpack an envelope and return its body; DecodeError on anything else."""
    try:
        env = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise DecodeError(f"not a msgpack envelope: {exc}") from None
    if not isinstance(env, dict) or "v" not in env or "b" not in env:
        raise DecodeError("not a Warren envelope (missing version or body)")
    if env["v"] != VERSION:
        raise DecodeError(
            f"unsupported envelope version {env['v']!r} (this build speaks {VERSION})"
        )
    if kind is not None and env.get("k") != kind:
        raise DecodeError(f"expected a {kind!r} envelope, got {env.get('k')!r}")
    return env["b"]


def dumps_json(obj: Any) -> bytes:
    """JSON as people and handlers see it."""
    return orjson.dumps(obj)


def loads_json(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from None
