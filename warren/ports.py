"""The seams the rooms meet through, as Protocols: whoever implements one needs no base class."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from warren.invocation import InvocationResult


class Dispatcher(Protocol):
    """Invokes functions as Lambda's Invoke API does (router.dispatch.Dispatcher is the fleet's).

    One caller thread at a time; `close()` gives back its connections and parked leases.
    """

    def invoke(
        self,
        name: str,
        payload: Any = None,
        qualifier: str | None = None,
        invocation_type: str = "RequestResponse",
        log_tail: bool = False,
    ) -> InvocationResult: ...

    def invoke_many(
        self,
        name: str,
        payloads: Iterable[Any],
        qualifier: str | None = None,
        invocation_type: str = "Event",
        chunk_size: int = 100,
    ) -> list[InvocationResult]: ...

    def close(self) -> None: ...


class RecordSink(Protocol):
    """Where invocation and batch records go (an on-success or on-failure destination):
    `send` returns once the record is durably stored."""

    uri: str

    def send(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...
