"""Invocation logs also on the worker's stdout, as Lambda's JSON log lines (`--log-stdout`), so
a log shipper (fluent-bit, Promtail, Vector) can take them from the container's output."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

import orjson

from warren.logformat import records
from warren.store.logs import LogStore


class ShippingLogStore(LogStore):
    """A LogStore whose raw XADDs also print the block, one JSON object per line."""

    def __init__(self, *args: Any, stream: TextIO | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._out = stream or sys.stdout
        self._lock = threading.Lock()  # slot threads write whole blocks, never interleaved

    def append_command(
        self, function: str, request_id: str, version: str, text: str
    ) -> tuple[str | int, ...]:
        lines = b"".join(
            orjson.dumps(record) + b"\n"
            for record in records(function, request_id, version, text, time.time())
        )
        with self._lock:
            self._out.write(lines.decode())
            self._out.flush()
        return super().append_command(function, request_id, version, text)
