"""The result of one invocation, and the START/END/REPORT lines Lambda writes around it."""

from __future__ import annotations

import json
import math
import os
import signal
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson


@dataclass(frozen=True)
class Outcome:
    """What `Sandbox.invoke` returns; a handler's failure is an Outcome, never an exception.

    `status` is "success", "error" or "timeout". `result_json` is the JSON exactly as the
    handler's result was serialised, or the error object's JSON on failure; `result` decodes it
    on first access. `init_ms` is set on the first invocation of a sandbox only.
    """

    ok: bool
    status: str
    result_json: bytes
    error_type: str | None
    duration_ms: float
    billed_duration_ms: int
    init_ms: float | None
    max_memory_mb: int
    memory_size_mb: int
    logs: str
    request_id: str
    error: dict[str, Any] | None = field(default=None)

    @cached_property
    def result(self) -> Any:
        if not self.ok:
            return None
        try:
            return orjson.loads(self.result_json)
        except orjson.JSONDecodeError:
            pass
        try:
            return json.loads(self.result_json)  # NaN and Infinity, which Python's json emits
        except ValueError:  # a custom runtime may answer with any bytes; Lambda passes them on
            return self.result_json.decode("utf-8", "replace")

    def failure(self) -> str:
        """One line saying why it failed (for an init run ahead of traffic)."""
        error = self.error or {}
        kind = error.get("errorType", self.error_type)
        return f"{kind}: {error.get('errorMessage', self.status)}"

    def as_dict(self) -> dict[str, Any]:
        """The `--output json` shape."""
        return {
            "result": self.result,
            "error": self.error,
            "duration_ms": round(self.duration_ms, 2),
            "init_ms": None if self.init_ms is None else round(self.init_ms, 2),
            "max_memory_mb": self.max_memory_mb,
            "logs": self.logs,
        }


def billed(duration_ms: float) -> int:
    return max(1, math.ceil(duration_ms))


def start_line(request_id: str, version: str) -> str:
    return f"START RequestId: {request_id} Version: {version}\n"


def end_lines(
    request_id: str,
    status: str,
    error_type: str | None,
    duration_ms: float,
    memory_size_mb: int,
    max_memory_mb: int,
    init_ms: float | None,
) -> str:
    parts = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {billed(duration_ms)} ms",
        f"Memory Size: {memory_size_mb} MB",
        f"Max Memory Used: {max_memory_mb} MB",
    ]
    if init_ms is not None:
        parts.append(f"Init Duration: {init_ms:.2f} ms")
    if status == "timeout":
        parts.append("Status: timeout")
    elif status == "error":
        parts.append(f"Status: error\tError Type: {error_type}")
    return f"END RequestId: {request_id}\n" + "\t".join(parts) + "\t\n"


def make_outcome(
    rid: str,
    version: str,
    memory_mb: int,
    output: str,
    status: str,
    error: dict[str, Any] | None,
    body: bytes,
    duration_ms: float,
    init_ms: float | None,
    max_mb: int = 0,
) -> Outcome:
    """The Outcome of one run: its START line, the handler's output, END and REPORT lines."""
    etype = error.get("errorType") if error is not None else None
    text = (
        start_line(rid, version)
        + output
        + end_lines(rid, status, etype, duration_ms, memory_mb, max_mb, init_ms)
    )
    return Outcome(
        ok=status == "success",
        status=status,
        result_json=body,
        error_type=etype,
        duration_ms=duration_ms,
        billed_duration_ms=billed(duration_ms),
        init_ms=init_ms,
        max_memory_mb=max_mb,
        memory_size_mb=memory_mb,
        logs=text,
        request_id=rid,
        error=error,
    )


def describe_status(status: int | None) -> str:
    """Go's wording, which Lambda's messages use: `exit status 3`, `signal: killed`."""
    if status is None:
        return "signal: killed"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = (signal.strsignal(sig) or f"signal {sig}").lower()
        return f"signal: {name}"
    return f"exit status {os.WEXITSTATUS(status)}"
