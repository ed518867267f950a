"""The invocation and result contracts, and their wire form between invoker, router and worker."""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from warren import codec
from warren.errors import DecodeError
from warren.function import SPEC_KIND, FunctionSpec
from warren.keys import REPLY_LIST_SCHEME, Keys, lease_member

REQUEST_RESPONSE = "RequestResponse"
EVENT = "Event"
DRY_RUN = "DryRun"
INVOCATION_TYPES = (REQUEST_RESPONSE, EVENT, DRY_RUN)

CHUNK_KIND = "invocations"
RESULT_KIND = "result"
ITEM_KIND = "invocation"  # one invocation naming spec 0, beside its packed spec
SPEC_CACHE = 256  # packed specs a process keeps decoded
LOG_TAIL_BYTES = 4096


def reply_list(reply_to: str | None, prefix: str) -> str | None:
    """The list named by a `redis+list:///` reply_to, if it is one of this fleet's reply keys.

    Anything else under that scheme is refused (None): a worker writes only its own fleet's
    reply keys, never a key a message names at will.
    """
    if not reply_to or not reply_to.startswith(REPLY_LIST_SCHEME):
        return None
    key = reply_to[len(REPLY_LIST_SCHEME) :]
    own = Keys(prefix).reply("")
    if not key.startswith(own) or not 0 < len(key) - len(own) <= 64:
        return None
    return key


@dataclass(frozen=True)
class Invocation:
    """One invocation of one resolved function version; `request_id` is stable across retries.

    The resolved spec travels with it, so a worker needs no registry read on the hot path.
    `attempt` is Lambda's approximateInvokeCount of the run this message leads to.
    """

    request_id: str
    spec: FunctionSpec
    payload: bytes
    invocation_type: str = REQUEST_RESPONSE
    attempt: int = 1
    accepted_at: float = field(default_factory=time.time)
    lease_key: str | None = None
    lease_expires: float = 0.0
    log_tail: bool = False
    held_lease: str | None = None  # a lease the sync caller keeps (and releases) itself
    throttles: int = 0  # times admission deferred it over a concurrency limit (not attempts)
    client_context: bytes | None = None  # Invoke's X-Amz-Client-Context, as JSON

    @property
    def lease_id(self) -> str:
        return self.held_lease or lease_member(self.spec.name, self.request_id)

    def age_s(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.accepted_at

    def leased(self, key: str, expires: float) -> Invocation:
        return replace(self, lease_key=key, lease_expires=expires)

    def throttled(self) -> Invocation:
        return replace(self, throttles=self.throttles + 1)

    def next_attempt(self) -> Invocation:
        return replace(self, attempt=self.attempt + 1, lease_key=None, lease_expires=0.0)

    def to_wire(self, spec_index: int | None = None) -> dict[str, Any]:
        """The wire dict; with `spec_index`, the spec is named by its place in the chunk's
        `specs` list instead of travelling inline."""
        wire: dict[str, Any] = {
            "id": self.request_id,
            "payload": self.payload,
            "type": self.invocation_type,
            "attempt": self.attempt,
            "accepted": self.accepted_at,
            "lease": self.lease_key,
            "lease_exp": self.lease_expires,
            "tail": self.log_tail,
            "held": self.held_lease,
        }
        if self.throttles:
            wire["thr"] = self.throttles
        if self.client_context:
            wire["cc"] = self.client_context
        if spec_index is None:
            wire["spec"] = self.spec.wire
        else:
            wire["s"] = spec_index
        return wire

    @classmethod
    def from_wire(cls, data: Any, specs: Sequence[FunctionSpec] = ()) -> Invocation:
        try:
            spec = specs[data["s"]] if "s" in data else FunctionSpec.from_dict(data["spec"])
            return cls(
                request_id=str(data["id"]),
                spec=spec,
                payload=bytes(data["payload"]),
                invocation_type=str(data["type"]),
                attempt=int(data["attempt"]),
                accepted_at=float(data["accepted"]),
                lease_key=data.get("lease"),
                lease_expires=float(data.get("lease_exp") or 0.0),
                log_tail=bool(data.get("tail")),
                held_lease=str(data["held"]) if data.get("held") else None,
                throttles=int(data.get("thr") or 0),
                client_context=bytes(data["cc"]) if data.get("cc") else None,
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise DecodeError(f"not a valid invocation: {type(exc).__name__}: {exc}") from None


def encode_chunk(invocations: Sequence[Invocation]) -> bytes:
    """Several invocations in one message: a hop moves work in chunks, acked as one.

    The body is `{"specs": [spec, ...], "items": [invocation, ...]}`, each item naming its spec
    by index: a chunk of a hundred invocations of one function carries the spec once (it was
    nine tenths of the message, and decoding it a hundred times most of a router's work).
    """
    index: dict[int, int] = {}
    specs: list[dict[str, Any]] = []
    items = []
    for inv in invocations:
        at = index.get(id(inv.spec))
        if at is None:
            at = index[id(inv.spec)] = len(specs)
            specs.append(inv.spec.wire)
        items.append(inv.to_wire(at))
    return codec.encode(CHUNK_KIND, {"specs": specs, "items": items})


def decode_chunk(data: bytes) -> list[Invocation]:
    """A chunk's invocations; also reads the earlier body, a plain list with inline specs."""
    body = codec.decode(data, CHUNK_KIND)
    if isinstance(body, dict):
        raw_specs, body = body.get("specs"), body.get("items")
        if not isinstance(raw_specs, list):
            raise DecodeError("an invocation chunk's specs must be a list")
        try:
            specs = [FunctionSpec.from_dict(raw) for raw in raw_specs]
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"not a valid function spec: {type(exc).__name__}: {exc}") from None
    else:
        specs = []
    if not isinstance(body, list) or not body:
        raise DecodeError("an invocation chunk must be a non-empty list")
    return [Invocation.from_wire(item, specs) for item in body]


def encode_single(invocation: Invocation) -> tuple[bytes, bytes]:
    """One invocation as (its packed spec, the invocation naming spec 0): the spec's bytes are
    the same for every call of a spec, so a receiver decodes each spec once (`decode_single`)."""
    return invocation.spec.packed, codec.encode(ITEM_KIND, invocation.to_wire(0))


_specs: dict[bytes, FunctionSpec] = {}


def decode_single(spec: bytes, item: bytes) -> Invocation:
    """`encode_single`'s two parts as an invocation; the spec is decoded once per process (up
    to SPEC_CACHE specs). DecodeError on anything malformed."""
    known = _specs.get(spec)
    if known is None:
        try:
            known = FunctionSpec.from_dict(codec.decode(spec, SPEC_KIND))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DecodeError(f"not a valid function spec: {type(exc).__name__}: {exc}") from None
        if len(_specs) >= SPEC_CACHE:
            _specs.clear()
        _specs[spec] = known
    body = codec.decode(item, ITEM_KIND)
    if not isinstance(body, dict):
        raise DecodeError("an invocation must be a map")
    return Invocation.from_wire(body, [known])


@dataclass(frozen=True)
class InvocationResult:
    """What an invoke returns, as Lambda's Invoke API: status, payload, error, version, log."""

    status_code: int
    payload: Any = None
    function_error: str | None = None
    executed_version: str | None = None
    log_result: str | None = None
    request_id: str = ""
    raw_payload: bytes = b""

    @property
    def logs(self) -> str:
        """The decoded log tail (log_result is base64, as Lambda's X-Amz-Log-Result)."""
        if not self.log_result:
            return ""
        return base64.b64decode(self.log_result).decode("utf-8", "replace")

    def to_dict(self) -> dict[str, Any]:
        return {
            "status_code": self.status_code,
            "executed_version": self.executed_version,
            "function_error": self.function_error,
            "payload": self.payload,
            "log_result": self.log_result,
        }

    def encode(self) -> bytes:
        return codec.encode(
            RESULT_KIND,
            {
                "status": self.status_code,
                "payload": self.raw_payload,
                "error": self.function_error,
                "version": self.executed_version,
                "log": self.log_result,
                "id": self.request_id,
            },
        )

    @classmethod
    def decode(cls, data: bytes) -> InvocationResult:
        body = codec.decode(data, RESULT_KIND)
        try:
            raw = bytes(body["payload"] or b"")
            return cls(
                status_code=int(body["status"]),
                payload=codec.loads_json(raw) if raw else None,
                function_error=body.get("error"),
                executed_version=body.get("version"),
                log_result=body.get("log"),
                request_id=str(body.get("id", "")),
                raw_payload=raw,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"not a valid result: {exc}") from None


def log_tail(logs: str) -> str:
    """The last 4 KB of an invocation's log, base64, as Lambda's LogType=Tail."""
    data = logs.encode("utf-8", "replace")[-LOG_TAIL_BYTES:]
    return base64.b64encode(data).decode("ascii")
