"""The in-sandbox runtime: import the handler once (init), then serve invocations over a socket.

This module runs inside the child and imports only the standard library (see protocol.py).
Errors are shaped as awslambdaric shapes them: errorMessage, errorType, requestId, stackTrace,
with the runtime's own frames trimmed from the trace.
"""

from __future__ import annotations

import decimal
import importlib
import io
import json
import logging
import os
import resource
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from sandbox import protocol

MAX_RESPONSE_BYTES = 6 * 1024 * 1024 + 100  # Lambda's 6291556-byte sync response limit
_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))

Handler = Callable[[Any, Any], Any]


class _Attributes:
    """A JSON object's keys as attributes (a missing one is None), as awslambdaric's are."""

    def __init__(self, data: Any, names: tuple[str, ...]) -> None:
        data = data if isinstance(data, dict) else {}
        for name in names:
            setattr(self, name, data.get(name))


class ClientContext:
    """`context.client_context`: Invoke's X-Amz-Client-Context (client, custom, env)."""

    CLIENT = ("installation_id", "app_title", "app_version_name", "app_version_code",
              "app_package_name")

    def __init__(self, data: dict[str, Any]) -> None:
        client = data.get("client")
        self.client = _Attributes(client, self.CLIENT) if client is not None else None
        self.custom = data.get("custom")
        self.env = data.get("env")

    @classmethod
    def parse(cls, raw: bytes) -> ClientContext | None:
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return cls(data) if isinstance(data, dict) else None


class LambdaContext:
    """The `context` argument, with the attributes Lambda's Python runtime provides."""

    def __init__(
        self,
        request_id: str,
        deadline_epoch_ms: float,
        fixed: dict[str, Any],
        client_context: bytes = b"",
    ) -> None:
        self.aws_request_id = request_id
        self.__dict__.update(fixed)
        self.identity = None
        self.client_context = ClientContext.parse(client_context) if client_context else None
        self._deadline_epoch_ms = deadline_epoch_ms

    @staticmethod
    def fixed_attributes(env: Any, arn: str) -> dict[str, Any]:
        """What stays the same for every invocation of a sandbox, read once."""
        return {
            "function_name": env.get("AWS_LAMBDA_FUNCTION_NAME"),
            "function_version": env.get("AWS_LAMBDA_FUNCTION_VERSION"),
            "invoked_function_arn": arn,
            # A string, as awslambdaric reads it from the environment.
            "memory_limit_in_mb": env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
            "log_group_name": env.get("AWS_LAMBDA_LOG_GROUP_NAME"),
            "log_stream_name": env.get("AWS_LAMBDA_LOG_STREAM_NAME"),
        }

    def get_remaining_time_in_millis(self) -> int:
        return max(int(self._deadline_epoch_ms - time.time() * 1000), 0)

    def log(self, msg: str) -> None:
        sys.stdout.write(msg)


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def _log_handler(stream: Any, request_filter: logging.Filter) -> logging.Handler:
    """The root logger's handler: Lambda's `[LEVEL]\t<time>Z\t<request id>\t<message>`."""
    handler = logging.StreamHandler(stream)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime  # type: ignore[assignment]
    handler.setFormatter(formatter)
    handler.addFilter(request_filter)
    return handler


def setup_stdio() -> _RequestIdFilter:
    """stdout and stderr line-buffered on fds 1 and 2, the root logger in Lambda's format.

    Done by a spare ahead of its hand-off (its fds 1 and 2 are already the log pipe)."""
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
    request_filter = _RequestIdFilter()
    logging.getLogger().handlers[:] = [_log_handler(sys.stdout, request_filter)]
    return request_filter


class RuntimeFault(Exception):
    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type, self.message, self.trace = error_type, message, trace or []


def error_object(
    error_type: str, message: str, request_id: str, trace: list[str]
) -> dict[str, Any]:
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": trace,
    }


def user_trace(tb: Any) -> list[str]:
    """Format a traceback without the runtime's own leading frames."""
    frames = traceback.extract_tb(tb)
    while frames and frames[0].filename.startswith(_RUNTIME_DIR):
        frames.pop(0)
    return traceback.format_list(frames)


def load_handler(spec: str) -> Handler:
    try:
        modname, fname = spec.rsplit(".", 1)
    except ValueError as exc:
        raise RuntimeFault("Runtime.MalformedHandlerName", f"Bad handler '{spec}': {exc}") from None
    if modname.split(".")[0] in sys.builtin_module_names:
        raise RuntimeFault(
            "Runtime.BuiltInModuleConflict",
            f"Cannot use built-in module {modname} as a handler module",
        )
    try:
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as exc:
        raise RuntimeFault(
            "Runtime.ImportModuleError", f"Unable to import module '{modname}': {exc}"
        ) from None
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n', f"    {exc.text}\n"]
        raise RuntimeFault(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {exc}", trace
        ) from None
    except Exception as exc:  # module-level code raised: Lambda reports the exception itself
        raise RuntimeFault(type(exc).__name__, str(exc), user_trace(exc.__traceback__)) from None
    handler = getattr(module, fname, None)
    if handler is None:
        raise RuntimeFault(
            "Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'"
        )
    return handler  # type: ignore[no-any-return]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, decimal.Decimal):
        return float(obj) if obj % 1 else int(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _log_error(err: dict[str, Any]) -> None:
    lines = [f"[ERROR] {err['errorType']}: {err['errorMessage']}\n"]
    if err["stackTrace"]:
        lines.append("Traceback (most recent call last):\n")
        lines.extend(err["stackTrace"])
    sys.stderr.write("".join(lines).rstrip("\n") + "\n")


def _max_rss_kb() -> int:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


class Runtime:
    """Serves one sandbox: init once, then one invocation per request frame."""

    def __init__(
        self,
        sock: socket.socket,
        handler_spec: str,
        init_error: str | None,
        arn: str,
        reader: protocol.FrameReader | None = None,
        request_filter: _RequestIdFilter | None = None,
    ) -> None:
        self._sock = sock
        self._context_fixed = LambdaContext.fixed_attributes(os.environ, arn)
        self._spec = handler_spec
        self._init_error = init_error
        self._reader = reader or protocol.FrameReader()  # may hold a request already
        self._filter = request_filter or setup_stdio()
        self._handler: Handler | None = None

    def serve(self) -> None:
        started = time.perf_counter()
        error = self._init()
        init_ms = (time.perf_counter() - started) * 1000
        self._flush()
        self._sock.sendall(protocol.pack_ready(init_ms, error))
        if error is not None:
            return
        reader = self._reader
        while True:
            frame = protocol.recv_frame(self._sock, reader)
            if frame is None:
                return
            self._sock.sendall(self._invoke(*protocol.unpack_request(frame)))

    def rehearse(self) -> None:
        """Init and one invocation of `rehearsal.handler` (this directory's), then forget it.

        A spare runs it before its hand-off (child._prefault) so that the real init and first
        invocation find these paths' pages already copied: compiled from source as a handler
        module is (a pycache prefix that does not exist), nothing written anywhere."""
        saved = sys.pycache_prefix, sys.dont_write_bytecode, self._spec
        sys.pycache_prefix, sys.dont_write_bytecode = "/nonexistent/warren-rehearsal", True
        sys.path.insert(0, _RUNTIME_DIR)
        try:
            self._spec = "rehearsal.handler"
            if self._init() is None:
                self._invoke("rehearsal", time.time() * 1000 + 1000, b'{"a": [1, 2.5, "x"]}')
        finally:
            sys.modules.pop("rehearsal", None)
            sys.path.remove(_RUNTIME_DIR)
            sys.path_importer_cache.pop(_RUNTIME_DIR, None)
            sys.pycache_prefix, sys.dont_write_bytecode, self._spec = saved
            self._handler = None

    @staticmethod
    def prefault_stdio() -> None:
        """Build and use what `_setup_stdio` builds, on /dev/null (see child._prefault)."""
        with open(os.devnull, "w", buffering=1) as sink:
            record = logging.LogRecord("prefault", logging.INFO, __file__, 0, "m", None, None)
            _log_handler(sink, _RequestIdFilter()).handle(record)

    def _init(self) -> bytes | None:
        try:
            if self._init_error is not None:
                raise RuntimeFault("Runtime.ImportModuleError", self._init_error)
            self._handler = load_handler(self._spec)
            return None
        except RuntimeFault as fault:
            err = error_object(fault.error_type, fault.message, "", fault.trace)
            del err["requestId"]
            _log_error(err)
            return json.dumps(err).encode()

    def _invoke(
        self, request_id: str, deadline_ms: float, payload: bytes, client_context: bytes = b""
    ) -> bytes:
        started = time.perf_counter()
        self._filter.request_id = request_id
        ok, etype = False, ""
        try:
            try:
                event = json.loads(payload) if payload else None
            except ValueError as exc:
                message = f"Unable to unmarshal input: {exc}"
                raise RuntimeFault("Runtime.UnmarshalError", message) from None
            context = LambdaContext(request_id, deadline_ms, self._context_fixed, client_context)
            assert self._handler is not None
            result = self._handler(event, context)
            try:
                body = json.dumps(result, default=_json_default).encode()
            except (TypeError, ValueError, OverflowError, RecursionError) as exc:
                message = f"Unable to marshal response: {exc}"
                raise RuntimeFault("Runtime.MarshalError", message) from None
            if len(body) > MAX_RESPONSE_BYTES:
                raise RuntimeFault(
                    "Function.ResponseSizeTooLarge",
                    f"Response payload size ({len(body)} bytes) exceeded maximum allowed payload"
                    f" size ({MAX_RESPONSE_BYTES} bytes).",
                )
            ok = True
        except RuntimeFault as fault:
            err = error_object(fault.error_type, fault.message, request_id, fault.trace)
        except MemoryError:
            # Only reachable under the address-space rlimit; the caller discards this sandbox.
            message = f"RequestId: {request_id} Error: Runtime exited with error: out of memory"
            err = error_object("Runtime.OutOfMemory", message, request_id, [])
        except Exception as exc:
            trace = user_trace(exc.__traceback__)
            err = error_object(type(exc).__name__, str(exc), request_id, trace)
        if not ok:
            _log_error(err)
            etype = err["errorType"]
            body = json.dumps(err).encode()
        duration_ms = (time.perf_counter() - started) * 1000
        self._flush()
        return protocol.pack_response(ok, duration_ms, _max_rss_kb(), etype, body)

    @staticmethod
    def _flush() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
