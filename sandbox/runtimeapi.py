"""The Lambda Runtime API (2018-06-01) of one sandbox: what each request means, and the reply.

`RuntimeApi` is the protocol without the I/O (apichannel.py moves the bytes): the caller
`submit`s an invocation, the runtime's `GET .../invocation/next` receives it, its
`POST .../response` or `.../error` ends it. Mistakes are answered as Lambda answers them (its
Runtime Interface Emulator's types): a request id that is not the one in flight is 400
`InvalidRequestID`; a second answer, or one outside an invocation, is 403
`InvalidStateTransition`; a response over 6,291,556 bytes is 413 `RequestEntityTooLarge` and the
invocation fails with `Function.ResponseSizeTooLarge`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from sandbox.httpconn import Connection, Request

MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100  # Lambda's 6,291,556-byte sync response limit
PREFIX = "/2018-06-01/runtime/"
_JSON = {"Content-Type": "application/json"}
_ACCEPTED = b'{"status":"OK"}'


@dataclass(frozen=True)
class Ready:
    """Init is over: the runtime asked for its first event, or posted an init error."""

    init_ms: float
    error: bytes | None  # the error object's JSON


@dataclass(frozen=True)
class Answer:
    """The runtime answered the invocation in flight."""

    ok: bool
    error_type: str
    body: bytes
    duration_ms: float


def _error(status_text: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": status_text}).encode()


def error_object(body: bytes, header_type: str | None, fallback: str) -> tuple[str, bytes]:
    """(errorType, error JSON) from what a runtime posted; always a JSON object with a type."""
    try:
        posted = json.loads(body) if body else None
    except ValueError:
        posted = None
    if not isinstance(posted, dict):
        text = body.decode("utf-8", "replace")
        posted = {"errorMessage": text, "errorType": header_type or fallback}
    etype = posted.get("errorType") or header_type or fallback
    if not isinstance(etype, str):
        etype = fallback
    posted["errorType"] = etype
    return etype, json.dumps(posted).encode()


def trace_id() -> str:
    """An X-Ray-shaped trace header, as Lambda sends one with every event."""
    stamp = f"{int(time.time()):08x}"
    return f"Root=1-{stamp}-{os.urandom(12).hex()};Parent={os.urandom(8).hex()};Sampled=0"


class RuntimeApi:
    """One sandbox's Runtime API state: init, then one invocation at a time."""

    def __init__(self, function_arn: str, started: float) -> None:
        self._arn = function_arn
        self._started = started
        self.ready: Ready | None = None  # set once; taken by the channel
        self.ready_taken = False
        self.answer: Answer | None = None
        self._pending: tuple[bytes, bytes] | None = None  # (headers, payload) not yet delivered
        self._current: str | None = None  # the request id in flight
        self._sent_at = 0.0
        self._parked: Connection | None = None  # a GET .../next waiting for an event

    def submit(
        self, request_id: str, deadline_ms: float, payload: bytes, client_context: bytes = b""
    ) -> None:
        """An invocation for the runtime; delivered now if it is waiting, else on its next GET."""
        context = ""
        if client_context:  # one header line: the JSON re-encoded without line breaks
            compact = json.dumps(json.loads(client_context), separators=(",", ":"))
            context = f"Lambda-Runtime-Client-Context: {compact}\r\n"
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Lambda-Runtime-Aws-Request-Id: {request_id}\r\n"
            f"Lambda-Runtime-Deadline-Ms: {int(deadline_ms)}\r\n"
            f"Lambda-Runtime-Invoked-Function-Arn: {self._arn}\r\n"
            f"Lambda-Runtime-Trace-Id: {trace_id()}\r\n{context}"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode("latin-1")
        self._current, self.answer = request_id, None
        self._sent_at = time.monotonic()
        self._pending = (head, payload)
        if self._parked is not None:
            conn, self._parked = self._parked, None
            self._deliver(conn)

    @property
    def in_flight(self) -> str | None:
        """The request id submitted and not answered yet, if any."""
        return self._current

    def elapsed_ms(self) -> float:
        """Since the invocation in flight was handed to the runtime."""
        return (time.monotonic() - self._sent_at) * 1000

    @property
    def waiting(self) -> bool:
        """The runtime is blocked in GET .../next: the next event goes straight to it."""
        return self._parked is not None

    def holds(self, conn: Connection) -> bool:
        """Whether `conn` is the parked GET, still owed an event."""
        return self._parked is conn

    def forget(self, conn: Connection) -> None:
        if self._parked is conn:
            self._parked = None

    def handle(self, conn: Connection, req: Request) -> None:
        """Route one request and reply (or park a GET .../next until there is an event)."""
        path = req.path.split("?", 1)[0]
        if not path.startswith(PREFIX):
            conn.reply(404, _error("InvalidRequestFormat", f"no such path: {path}"), _JSON)
            return
        route = path[len(PREFIX) :]
        if route == "invocation/next" and req.method == "GET":
            self._next(conn)
        elif route == "init/error" and req.method == "POST":
            self._init_error(conn, req)
        elif route.startswith("invocation/") and req.method == "POST":
            rid, _, what = route[len("invocation/") :].rpartition("/")
            if what in ("response", "error") and rid:
                self._answer(conn, req, rid, what)
                return
            conn.reply(404, _error("InvalidRequestFormat", f"no such path: {path}"), _JSON)
        else:
            conn.reply(404, _error("InvalidRequestFormat", f"no such path: {path}"), _JSON)

    def _next(self, conn: Connection) -> None:
        if self.ready is None:
            self.ready = Ready((time.monotonic() - self._started) * 1000, None)
        if self._current is not None and self._pending is None:
            # Asking for the next event without answering this one: refused, as by Lambda.
            self._refuse_state(conn, "Invocation", "Ready")
            return
        if self._pending is not None:
            self._deliver(conn)
        else:
            self._parked = conn

    def _deliver(self, conn: Connection) -> None:
        assert self._pending is not None
        head, payload = self._pending
        self._pending = None
        self._sent_at = time.monotonic()
        conn.out += head
        conn.out += payload
        conn.flush()

    def _init_error(self, conn: Connection, req: Request) -> None:
        if self.ready is not None:
            self._refuse_state(conn, "Ready", "InitError")
            return
        header = req.headers.get("lambda-runtime-function-error-type")
        _, body = error_object(req.body, header, "Runtime.InitError")
        self.ready = Ready((time.monotonic() - self._started) * 1000, body)
        conn.reply(202, _ACCEPTED, _JSON)

    def _answer(self, conn: Connection, req: Request, rid: str, what: str) -> None:
        if self._current is None or self._pending is not None:
            state = "Ready" if self.ready is not None else "Init"
            target = "InvocationResponse" if what == "response" else "InvocationErrorResponse"
            self._refuse_state(conn, "RuntimeResponseSent" if self.answer else state, target)
            return
        if rid != self._current:
            conn.reply(400, _error("InvalidRequestID", "Invalid request ID"), _JSON)
            return
        duration_ms = (time.monotonic() - self._sent_at) * 1000
        self._current = None
        if what == "error":
            header = req.headers.get("lambda-runtime-function-error-type")
            etype, body = error_object(req.body, header, "Unhandled")
            self.answer = Answer(False, etype, body, duration_ms)
            conn.reply(202, _ACCEPTED, _JSON)
        elif req.size > MAX_RESPONSE_BYTES:
            message = (
                f"Response payload size ({req.size} bytes) exceeded maximum allowed payload size "
                f"({MAX_RESPONSE_BYTES} bytes)."
            )
            etype = "Function.ResponseSizeTooLarge"
            body = json.dumps({"errorMessage": message, "errorType": etype}).encode()
            self.answer = Answer(False, etype, body, duration_ms)
            message = f"Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
            conn.reply(413, _error("RequestEntityTooLarge", message), _JSON)
        else:
            self.answer = Answer(True, "", req.body, duration_ms)
            conn.reply(202, _ACCEPTED, _JSON)

    def _refuse_state(self, conn: Connection, src: str, dst: str) -> None:
        message = f"State transition from {src} to {dst} failed for runtime. Error: not allowed"
        conn.reply(403, _error("InvalidStateTransition", message), _JSON)
